"""``ssp bench-node``: the running node measured from outside, as a camera and a viewer on the drone see it.

Each run starts the node as its own process (``ssp_node`` on rclpy / Fast DDS, or ``ssp node --transport dds`` on
Cyclone DDS) on loopback in a private domain, with a config the bench writes (backend, export folder, model input =
the frame size rounded up to a multiple of 32). A camera in this process, on the same middleware, publishes
synthetic drone frames at a fixed rate, each stamped with the wall clock when it is sent; a subscription to the
node's ``~/mask`` records arrival time − header stamp per mask: the camera-stamp → mask latency (both transport
legs, the newest-frame slot, conversion, pipeline, publishing). A sampler reads the node process's VmRSS
(``/proc/<pid>/status``) every second. ``ssp bench`` (``eval/bench.py``) measures the pipeline alone.
``ssp bench-node --delivery`` (``delivery``) measures Fast DDS alone: no node, no model.

One run, every wait bounded:

1. ``write_node_config``, start the node; wait until it subscribes to the camera (``START_TIMEOUT_S``);
2. handshake: repeat one frame until its mask comes back (a best-effort reader may miss the first samples);
   refuse a domain where another node or camera is on the same topics;
3. ``stream`` for ``duration_s`` at ``rate_hz``, sampling RSS; the first ``warmup_s`` are left out of every number;
4. drain: wait until the last frame's mask came back, or none came for ``DRAIN_QUIET_S`` (at most ``DRAIN_MAX_S``);
5. keep the node's /diagnostics: the last one while streaming (its window: fps, per-stage latency) and the last
   after the drain (its totals: received, dropped, skipped); stop it with SIGINT.

An overload run is a run with the camera faster than the node: frames must be dropped, not queued, so the RSS
drift after the warm-up (max − min) stays within ``rss_limit_mb``. Speed targets live here, in JSON, never in
timed tests.

Modules, lowest first: ``plan`` (transports, sizes, topics, the run matrix), ``run_numbers`` (percentiles,
windows, RSS; pure), ``node_process`` (the node's process and domain), ``camera`` (the camera and viewer on the
node's transports), ``run`` (one run), ``report`` (machine, summary, Markdown), ``matrix`` (every run into one
report), ``delivery`` (``--delivery``).
"""
