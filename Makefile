# One way to do each thing. Everything runs in the project's own virtual environment, .venv/
# (made with the machine's python3 when missing, reused after), so the two commands of the
# README work on a machine whose python3 is the system's. To use another interpreter instead:
# `make PYTHON=/path/to/python ...`. Point LENET1_DATA at a folder holding zip.train.gz and
# zip.test.gz, or let the loader download them to data/.
ifeq ($(origin PYTHON), undefined)
VENV := .venv
PYTHON := $(VENV)/bin/python
$(PYTHON):
	python3 -m venv $(VENV) || { echo "make: python3 could not make $(VENV); on Debian or" \
	  "Ubuntu: apt-get install python3-venv (or make PYTHON=/path/to/python)" >&2; exit 1; }
endif
STAMP := $(dir $(PYTHON)).lenet1-installed
JUPYTER_BOOK := $(PYTHON) -c "from jupyter_book.cli.main import main; main()"

.PHONY: install test book notebooks train clean

$(STAMP): pyproject.toml requirements.txt | $(VENV:%=$(PYTHON))
	$(PYTHON) -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

## test: type check, unit tests, then every chapter in quick mode (nbval: runs every cell, and compares
## the cells tagged nbval-check-output with the outputs committed in notebooks/*.ipynb)
test: install
	$(PYTHON) -m mypy lenet1
	$(PYTHON) -m pytest -q tests
	LENET1_QUICK=1 $(PYTHON) -m pytest -q --nbval-lax notebooks

## book: train (or reload) every network the chapters show, through the command line with its
## progress, then execute every chapter in full mode (they only reload) and build the site
## strictly into _build/html. Trained networks are cached in runs/ under the code key of the
## modules that decide numbers; executed chapters in _build/.jupyter_cache, which is wiped
## whenever any file of lenet1/ changes (its fingerprint is kept in _build/.lenet1-source), so
## the site never shows what older code printed. --all re-reads every page from that cache
## (seconds), so numbers pasted across pages are never stale.
BOOK_FINGERPRINT := _build/.lenet1-source
book: install
	$(PYTHON) -m lenet1 study paper
	$(PYTHON) -m lenet1 study modern
	@fingerprint="$$(find lenet1 -name '*.py' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"; \
	if [ "$$(cat $(BOOK_FINGERPRINT) 2>/dev/null)" != "$$fingerprint" ]; then \
	  echo "book: lenet1/ has changed since the last build; executing every chapter afresh"; \
	  rm -rf _build; \
	fi; \
	LENET1_QUICK=0 $(JUPYTER_BOOK) build --all -W -n --keep-going . && \
	echo "$$fingerprint" > $(BOOK_FINGERPRINT)

## notebooks: regenerate notebooks/*.ipynb from the .md chapters (inputs, and the quick-mode
## outputs of the nbval-checked cells only), ready to commit
notebooks: install
	LENET1_QUICK=1 $(PYTHON) notebooks/refresh.py

## train: LeNet-1 with the CLI's defaults (the paper's network and loop, SGD 0.03), 23 passes,
## into runs/sgd-0.03
train: install
	$(PYTHON) -m lenet1 train --passes 23 --out runs/sgd-0.03

clean:
	rm -rf _build $(STAMP)
