"""Learned codecs: CompressAI's model zoo and ``icm-lic``, our codec trained with a machine loss.

Both register in the codec registry (``icm.codecs`` imports :mod:`icm.learned.codec` and
:mod:`icm.learned.compressai_zoo`), so ``icm-lic@q5`` or ``bmshj2018-hyperprior@q3`` work
wherever a codec point does. Torch, constriction and CompressAI are imported only when a model
is used: without them these families are listed as unavailable and every other codec works.

* :mod:`icm.learned.network`: the mean-scale hyperprior with gain units and a quality map;
* :mod:`icm.learned.entropy`: rANS coding with a fixed scale table (deterministic decoding);
* :mod:`icm.learned.codec`: the ``icm-lic`` codec family and its bitstream, and
  ``icm-lic-lite0``, the same codec with the model tuned for EfficientNet-Lite0's view;
* :mod:`icm.learned.train`: rate + lambda x (MSE + alpha x machine feature distortion);
* :mod:`icm.learned.files`: hash-named float16 safetensors model files;
* :mod:`icm.learned.compressai_zoo`: CompressAI architectures as codec families.
"""
