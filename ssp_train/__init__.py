"""ssp_train: offline training of the image model and the SSP similarity head (no ROS needed).

``python -m ssp_train.train --config config/train/default.yaml`` (or ``ssp train --config ...``) runs the
recipe: synthetic drone video generated in memory, the image stage, then the SSP stage.
"""
