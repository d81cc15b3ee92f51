"""The tools wing: offline and bench tools around the node, never shipped in its process. ``bag`` (read and
write ROS 2 bags), ``replay`` (``ssp replay``: the node's processing over a bag, with a report) and
``node_bench`` (``ssp bench-node``: the running node measured from outside). It sits above ``ros`` and ``eval``
and uses both; nothing below imports it."""
