"""Training: the online loop (:mod:`~lenet1.train.online`: one network, or many replicas on the
compiled engine), the paper's optimiser (:mod:`~lenet1.train.sdlm`), and mini-batch training
with today's options (:mod:`~lenet1.train.minibatch`)."""
