"""The encoder and its fine-tuning, notebooks 02 and 06 (notebook 03 loads what they made).

``loading`` loads an encoder by name (``e5s1`` rebuilds the embedded one);
``classifier`` is the head a fine-tuning trains, ``frozen`` the encoder blocks
it may freeze, ``finetune`` the cached training run, ``evaluate`` its zero-shot
predictions, ``transfer`` the accuracy tables made from them and ``setups`` the
measured comparison of fine-tuning setups. ``fingerprint`` tells two model
states apart.
"""
