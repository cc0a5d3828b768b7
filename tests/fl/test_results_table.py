"""The test table names the precision the run trained at: a bf16-mixed table and a float32 one differ
in their last digits, and a reader compares a run with the table of the same precision."""

from fl.reporter import Reporter

SUMMARY = {"nmse": 0.03, "psnr": 26.5, "ssim": 0.7, "nmse_std": 0.0, "psnr_std": 0.0, "ssim_std": 0.0,
           "volumes": 4}  # fmt: skip


def test_results_md_and_the_printed_table_name_the_precision(tmp_path):
    lines = []
    for precision in ("bf16-mixed", "32-true"):
        config = {"trainer": {"precision": precision}}
        reporter = Reporter(tmp_path / precision, name="default", algorithm="fedmri", rounds=10,
                            config=config, sites=["fastmri"], tensorboard=False,
                            log=lines.append)  # fmt: skip
        site = {"best_round": 9, "model": SUMMARY, "zero_filled": SUMMARY}
        mean = {"model": SUMMARY, "zero_filled": SUMMARY}
        reporter.write_results({"name": "default", "algorithm": "fedmri", "rounds": 10,
                                "sites": {"fastmri": site}, "mean": mean})  # fmt: skip
        title = (tmp_path / precision / "results.md").read_text().splitlines()[0]
        assert title == f"### default: fedmri, 10 rounds (test split, best round per site, {precision})"
        assert lines[-1].strip().splitlines()[0] == title
