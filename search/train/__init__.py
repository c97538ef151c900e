"""How a candidate is trained: the recipe (architecture + training settings, plain data), the training
step (precision, loss scaling, weight averaging), the epoch loop and evaluation, self-supervised
pretraining, the losses, on-device augmentation and distortions, preference-pair training, and the
deadline-aware retrain that export and the notebook run.

One module per job: `recipe`, `step`, `loop`, `pretrain`, `losses`, `augment`, `distort`, `pairs`,
`retrain`. Other packages import from the module that owns a name.
"""
