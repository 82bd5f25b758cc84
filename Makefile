.PHONY: run test setup bench clean-cache

run:            ## install and launch the dashboard on the bundled default
	scripts/run.sh

test:           ## install and run every test
	scripts/test.sh

setup:
	scripts/setup.sh dev

bench:          ## speed and memory benchmarks (results go in BENCHMARKS.md by hand)
	.venv/bin/python bench/bench_core.py

clean-cache:
	rm -rf "$${GBS_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/gbs-explorer}"
