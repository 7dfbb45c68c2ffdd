"""What the papers and the earlier reproductions report, in one place (``shared/paper/FACTS.md``).

Everything here is quoted from its source, never a result of ours: the book prints these beside
the figures our code computes, and no module types them anywhere else.
"""

from __future__ import annotations

# The 1989 paper: LeCun et al., Neural Computation 1(4):541-551.
PAPER_CITATION = ("LeCun, Boser, Denker, Henderson, Howard, Hubbard, Jackel (1989). "
                  "Backpropagation Applied to Handwritten Zip Code Recognition. "
                  "Neural Computation 1(4), 541-551.")
TRAIN_DIGITS, TEST_DIGITS = 7291, 2007
PASSES = 23
TRAINING_TIME = "3 days on a SUN-4/260"
DSP_MULTIPLY_ADDS_PER_SECOND = 12.5e6  # the AT&T DSP-32C board the trained network ran on

# The paper's table of the constrained network, which our accounting must reproduce.
UNITS, CONNECTIONS, FREE_PARAMETERS = 1256, 64660, 9760

# Figures after 23 passes. Errors are fractions; "rejection" is the share of the test set
# rejected to reach 1% error on the rest.
PAPER: dict[str, dict[str, float]] = {
    "lenet1": {"train_mse": 2.5e-3, "train_error": 0.0014, "train_misses": 10,
               "test_mse": 1.8e-2, "test_error": 0.050, "test_misses": 102, "rejection": 0.121},
    "fc40": {"train_error": 0.016, "test_error": 0.081, "rejection": 0.194},
}

# The data's distributors (the description shipped with the files of *The Elements of
# Statistical Learning*): the test set is "notoriously difficult", and "a 2.5% error rate is
# excellent".
DISTRIBUTORS_EXCELLENT_ERROR = 0.025

# Karpathy's reproduction (karpathy/lecun1989-repro: repro.py, prepro.py), on 16x16 resizes of a
# seeded random draw of MNIST digits (plain bilinear, no anti-aliasing): plain tanh units, +-1
# targets, weights uniform in +-2.4/sqrt(F), output biases starting at -1, plain SGD with a step
# of 0.03, one pattern at a time in a constant order, 23 passes, one seed (1337). Reported after
# pass 23.
KARPATHY_BASELINE: dict[str, float] = {
    "lr": 0.03, "passes": 23, "train_error": 0.0062, "train_misses": 45,
    "test_error": 0.0409, "test_misses": 82,
}

# His modern.py, the path from that baseline: each step keeps the ones before it. The recipe of
# the last step, as its code gives it: online (batch 1, constant order), cross-entropy on the
# output layer's logits, AdamW (PyTorch's defaults, weight decay 0.01 on every parameter) with a
# learning rate decayed linearly from 3e-4 to 1e-4 over the passes, a random circular shift of
# -1, 0 or +1 pixel along each axis for every training pattern (torch.roll), ReLU units
# everywhere and dropout 0.25 on H2's states on their way into H3; 80 passes, one seed.
KARPATHY_MODERN: dict[str, float] = {
    "cross_entropy_sgd_lr": 0.01,  # his first step: softmax and cross-entropy, SGD at 0.01
    "adamw_lr_start": 3e-4, "adamw_lr_end": 1e-4,
    "adamw_passes": 46, "translate_passes": 60, "relu_dropout_passes": 80,
    "shift": 1, "dropout": 0.25, "batch_size": 1,
}

# Senn's reproduction (raphaelsenn/lenet-1: train.py, lenet1/create_data.py, README): the first
# 7,291 and 2,007 digits of MNIST's training and test sets (in an order drawn from seed 42,
# reshuffled every pass), resized to 16x16 by torchvision; plain tanh hidden units, sigmoid
# outputs against 0/1 targets, weights uniform in +-2.4/F, zero biases, Karpathy's connection
# table, plain SGD one pattern at a time (step 0.1725 by default), 23 passes, one seed.
# Reported after pass 23.
SENN: dict[str, float] = {
    "lr": 0.1725, "passes": 23, "train_error": 0.00521, "train_misses": 38,
    "test_error": 0.04933, "test_misses": 99,
}

# The modernised path of Karpathy's reproduction, on his MNIST stand-in, not on these digits:
# test errors as reported.
KARPATHY_PATH: dict[str, tuple[str, float]] = {
    "paper": ("baseline reproduction", 0.0409),
    "cross_entropy": ("+ softmax, cross-entropy", 0.0438),
    "adamw": ("+ AdamW", 0.0359),
    "translate": ("+ 1-pixel random shifts", 0.0219),
    "relu_dropout": ("+ ReLU and dropout", 0.0159),
}
