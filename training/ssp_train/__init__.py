"""ssp_train: offline training of the image model and the SSP similarity head (no ROS needed).

``python -m ssp_train.train --config config/train/default.yaml`` (or ``ssp train --config ...``) runs the
recipe: training frames (synthetic drone video generated in memory, or UAVid / RuralScapes on disk), the image
stage, then the SSP stage. ``torchrun --nproc_per_node N -m ssp_train.train --config ...`` runs it data parallel.

Modules, in the order data flows through them: ``config`` (the recipe schema), ``datasets`` (the real data sets
on disk: layouts and label files), ``sources`` (where frames come from: synthetic video generated in memory or a
real data set, behind one interface, with the flow of a pair), ``flow_cache`` (estimated flow of real pairs, and
the ``flow-cache`` command), ``augment``, ``data`` (torch datasets, the resumable sampler and the loaders),
``teacher`` (KD-SSP's teacher and its cached logits), ``losses`` (and the flow warping they use), ``objectives``,
``distributed``, ``checkpoint``, ``engine`` (the step loop, and validation), ``train`` (the stages and the
recipe), ``ablation`` (``ssp ablate``); ``cli`` adds the training commands to ``ssp``.
"""
