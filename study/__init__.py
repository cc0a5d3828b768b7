"""A study: several algorithms and FedMRI ablations trained on the same data over seeds, and everything
made from their raw result files (no model, no training): statistics, tables, claims, figures.

One module per idea, from the files up:

    records.py    the raw files a study keeps (manifest, one record per run, latent files) as typed models
    rows.py       a table row's runs over seeds: cells, paired comparisons with FedMRI, convergence
    formats.py    how numbers, intervals and verdicts are written in the tables
    tables.py     comparison.md's sections; comparison.csv and comparison.json
    claims.py     claims.md: each claim of the FedMRI paper, measured, with its verdict
    figures.py    bar charts, validation curves
    slices.py     each run's reconstructions of the figure slices: saved, loaded, drawn
    latent.py     bottleneck features, their t-SNE embedding and site separability (latent.py's library)
    panels.py     the paper's four t-SNE panels of a study: embedded once per run, read for the figure
    report.py     every table and figure of a results folder, rebuilt from its raw files
    variants.py   the algorithms and FedMRI ablations a study can train, as config overrides
    plan.py       a study's options resolved into runs (one per variant and seed) and its manifest
    runner.py     training the planned runs (one at a time or in worker processes), keeping their raw files

``compare.py`` is the command over :func:`study.runner.run_all`; ``latent.py`` the one over
:mod:`study.latent`.
"""
