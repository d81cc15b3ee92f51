"""Torch models of ssp_ros: backbone, UPerNet head, similarity head, image model, SSP, weights I/O.

Importing this package imports torch and timm; the drone's TensorRT/ONNX path never does.
"""

from ssp_ros.models.backbone import Backbone
from ssp_ros.models.build import MODEL_BUILDERS, build_segmenter, build_ssp, normalisation
from ssp_ros.models.fusion import fuse
from ssp_ros.models.segmenter import Segmenter
from ssp_ros.models.similarity_head import (
    SIMILARITY_INPUTS,
    SIMILARITY_KINDS,
    CosineBlend,
    FixedBlend,
    SimilarityHead,
    build_similarity,
    similarity_description,
)
from ssp_ros.models.ssp import SSP, FusionStep, WarpFusionStep
from ssp_ros.models.uper_head import PPM, UPerHead
from ssp_ros.models.warp import homography_grid, warp
from ssp_ros.models.weights import load_weights, read_state_dict, read_weights_metadata, save_weights

__all__ = [
    "MODEL_BUILDERS",
    "SIMILARITY_INPUTS",
    "SIMILARITY_KINDS",
    "PPM",
    "SSP",
    "Backbone",
    "CosineBlend",
    "FixedBlend",
    "FusionStep",
    "Segmenter",
    "SimilarityHead",
    "UPerHead",
    "WarpFusionStep",
    "build_segmenter",
    "build_similarity",
    "build_ssp",
    "fuse",
    "homography_grid",
    "load_weights",
    "normalisation",
    "read_state_dict",
    "read_weights_metadata",
    "save_weights",
    "similarity_description",
    "warp",
]
