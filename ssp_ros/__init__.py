"""ssp_ros: temporally consistent semantic segmentation for drones (Semantic Similarity Propagation).

The core (this package's top-level modules, ``backends``, ``models``, ``synthetic``) turns frames into masks;
the wings use it: ``deploy`` (export, TensorRT builds), ``eval`` (metrics, demo, bench, ssp eval), ``ros``
(the node), ``tools`` (bags, replay, the node bench) and ``cli`` (the ``ssp`` command). Imports point from the
wings to the core, never back (``test/test_architecture.py``); the companion training package ``ssp_train`` is
never imported here.
"""

__version__ = "0.1.0"
