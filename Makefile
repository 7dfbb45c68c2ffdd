# One way to do each thing. Everything runs with the current python3; point LENET1_DATA at a
# folder holding zip.train.gz and zip.test.gz (or let the loader download them to ./data).
PYTHON ?= python3
STAMP := .installed.stamp

.PHONY: install test book notebooks train clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

## test: type check, unit tests, then every chapter in quick mode (nbval: runs every cell, and compares
## the cells tagged nbval-check-output with the outputs committed in notebooks/*.ipynb)
test: install
	$(PYTHON) -m mypy lenet1
	$(PYTHON) -m pytest -q tests
	LENET1_QUICK=1 $(PYTHON) -m pytest -q --nbval-lax notebooks

## book: execute every chapter in full mode and build the site strictly into _build/html.
## Executed chapters are cached in _build/.jupyter_cache (and trained networks in runs/), but
## _build is wiped whenever the package's source changes, so the site never shows results of
## older code: the fingerprint of lenet1/*.py (lenet1.runs.code_fingerprint) is kept in _build/.lenet1-source. --all re-reads
## every page from that cache (seconds), so numbers pasted across pages are never stale.
BOOK_FINGERPRINT := _build/.lenet1-source
book: install
	@fingerprint="$$($(PYTHON) -c 'from lenet1.runs import code_fingerprint as f; print(f())')"; \
	if [ "$$(cat $(BOOK_FINGERPRINT) 2>/dev/null)" != "$$fingerprint" ]; then \
	  echo "book: lenet1/ has changed since the last build; executing every chapter afresh"; \
	  rm -rf _build; \
	fi; \
	LENET1_QUICK=0 jupyter-book build --all -W -n --keep-going . && \
	echo "$$fingerprint" > $(BOOK_FINGERPRINT)

## notebooks: regenerate notebooks/*.ipynb from the .md chapters (inputs, and the quick-mode
## outputs of the nbval-checked cells only), ready to commit
notebooks: install
	LENET1_QUICK=1 $(PYTHON) notebooks/refresh.py

## train: the paper's protocol, 23 passes, into runs/paper
train: install
	$(PYTHON) -m lenet1 train --passes 23 --engine fast --out runs/paper

clean:
	rm -rf _build $(STAMP)
