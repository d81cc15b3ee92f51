"""ssp_ros: temporally consistent semantic segmentation for drones (Semantic Similarity Propagation)."""

__version__ = "0.1.0"
