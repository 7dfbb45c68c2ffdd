"""Experiments: the one cache of trained things (:mod:`~lenet1.experiments.cache`), run
specifications (:mod:`~lenet1.experiments.runs`, :mod:`~lenet1.experiments.recipes`), statistics
over seeds (:mod:`~lenet1.experiments.stats`), the two studies returning plain results
(:mod:`~lenet1.experiments.paper`, :mod:`~lenet1.experiments.modern`), and the archive of
trained runs (:mod:`~lenet1.experiments.archive`)."""
