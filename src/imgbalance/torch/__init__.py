"""The torch wing (the ``torch`` extra): models, losses, class weights, samplers,
online mixing, the in-memory and streaming data paths and fine-tuning (:mod:`.finetune`);
the training loop that assembles them is :mod:`imgbalance.experiments.torch_train`.

Each family is a registry in the module that defines it (``@register_loss``,
``@register_model``, ``SAMPLERS.register``, ``MIXING.register``,
``CLASS_WEIGHTS.register``), with ``list_*()`` and ``create_*()``. Importing this
package does not import torch: :mod:`.weights`, :mod:`.samplers` and :mod:`.mixing`
are torch-free at import (experiment configs are validated with them), while
:mod:`.models`, :mod:`.losses`, :mod:`.data`, :mod:`.stream`, :mod:`.finetune` import torch.
"""
