"""ssp_train: offline training of the image model and the SSP similarity head (no ROS needed).

``python -m ssp_train.train --config config/train/default.yaml`` (or ``ssp train --config ...``) runs the
recipe: training frames (synthetic drone video generated in memory, or UAVid / RuralScapes on disk), the image
stage, then the SSP stage. ``torchrun --nproc_per_node N -m ssp_train.train --config ...`` runs it data parallel.

Modules, in the order data flows through them: ``config`` (the recipe schema), ``synthetic_data`` and
``datasets`` + ``labels`` (where frames come from), ``sources`` (one interface over both), ``pair_flow`` and
``flow_cache`` (optical flow of training pairs), ``augment``, ``sampler``, ``data`` (torch datasets and loaders),
``flow_warp`` and ``losses``, ``objectives``, ``distributed``, ``checkpoint``, ``engine`` (the step loop),
``validation``, ``train`` (the stages and the recipe), ``export``.
"""
