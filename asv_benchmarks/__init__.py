"""asv benchmark suite of eggroll_np (configured by asv.conf.json at the repository root)."""
