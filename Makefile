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

.PHONY: install test book mathjax site-test readme readme-check notebooks train clean

$(STAMP): pyproject.toml requirements.txt | $(VENV:%=$(PYTHON))
	$(PYTHON) -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

## test: type check, unit tests, then every chapter in quick mode (nbval: runs every cell, and compares
## the cells tagged nbval-check-output with the outputs committed in notebooks/*.ipynb)
# The tests run in one process per core (pytest-xdist; most of their time is single-threaded
# or waits on subprocesses and Dask clusters); a chapter's cells stay in one process, in order.
# TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto
test: install
	$(PYTHON) -m mypy lenet1
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) tests
	LENET1_QUICK=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --nbval-lax notebooks

## book: train (or reload) every network the chapters show, through the command line with its
## progress, then execute every chapter in full mode (they only reload) and build the site
## strictly into _build/html. Trained networks are cached in runs/ under the code key of the
## modules that decide numbers; executed chapters in _build/.jupyter_cache, which is wiped
## whenever any file of lenet1/ changes (its fingerprint is kept in _build/.lenet1-source), so
## the site never shows what older code printed. --all re-reads every page from that cache
## (seconds), so numbers pasted across pages are never stale.
BOOK_FINGERPRINT := _build/.lenet1-source
# The build's whole output, kept: on failure its warnings are repeated at the end, where a log
# that keeps only its last lines still shows them.
BOOK_LOG := _build/book.log
STUDY := _build/study
MODERN := _build/modern
FINGERPRINT = $$(find lenet1 -name '*.py' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
# The paper and modern studies also write their summaries and the README's tables (into STUDY
# and MODERN), so that make readme-check need not read every run again.
book: install mathjax
	@if [ "$$(cat $(BOOK_FINGERPRINT) 2>/dev/null)" != "$(FINGERPRINT)" ]; then \
	  echo "book: lenet1/ has changed since the last build; executing every chapter afresh"; \
	  rm -rf _build; \
	fi
	$(PYTHON) -m lenet1 study paper --out $(STUDY)
	$(PYTHON) -m lenet1 study modern --out $(MODERN)
	$(PYTHON) -m lenet1 study fidelity
	$(PYTHON) -m lenet1 study karpathy
	@fingerprint="$(FINGERPRINT)"; \
	mkdir -p _build; \
	{ LENET1_QUICK=0 $(JUPYTER_BOOK) build --all -W -n --keep-going .; echo $$? > _build/.book-exit; } 2>&1 \
	  | tee $(BOOK_LOG); \
	status="$$(cat _build/.book-exit)"; \
	if [ "$$status" != 0 ]; then \
	  echo "book: the strict build failed (exit $$status); its warnings and errors (all of it in $(BOOK_LOG)):" >&2; \
	  sed 's/\x1b\[[0-9;]*m//g' $(BOOK_LOG) | grep -E "(WARNING|ERROR|CRITICAL):" >&2; \
	  for report in $$(find _build/html/reports -name '*.log' 2>/dev/null); do \
	    echo "book: $$report (the end of it):" >&2; tail -n 40 "$$report" >&2; \
	  done; \
	  exit "$$status"; \
	fi; \
	echo "$$fingerprint" > $(BOOK_FINGERPRINT)

## mathjax: MathJax 3 ships with the site, so that equations render offline and from disk. It comes
## from the django-static-mathjax package (pinned in the book extra; no Django needed), whose
## es5 build is copied into book/_static/mathjax (git-ignored), which Sphinx publishes as
## _static/mathjax (mathjax_path in _config.yml).
MATHJAX := book/_static/mathjax
mathjax: $(MATHJAX)/tex-mml-chtml.js
$(MATHJAX)/tex-mml-chtml.js: $(STAMP)
	@src="$$($(PYTHON) -c 'import mathjax, pathlib; print(pathlib.Path(mathjax.__file__).parent / "static" / "mathjax")')" && \
	test -f "$$src/es5/tex-mml-chtml.js" || { echo "mathjax: no MathJax in the installed django-static-mathjax package ($$src)" >&2; exit 1; }; \
	rm -rf $(MATHJAX) && mkdir -p $(MATHJAX)/output && \
	cp -R "$$src/es5/tex-mml-chtml.js" "$$src/es5/input" "$$src/es5/ui" "$$src/es5/a11y" "$$src/es5/sre" \
	  "$$src/es5/adaptors" "$$src/LICENSE" "$$src/package.json" $(MATHJAX)/ && \
	cp -R "$$src/es5/output/chtml.js" "$$src/es5/output/chtml" $(MATHJAX)/output/

## site-test: the built site (_build/html, or SITE=DIR) in headless Chromium: every page loads
## without errors (over http and from disk), images, equations and links work, the live
## network agrees with the package; screenshots go to _build/screenshots (or SHOTS=DIR).
## Needs Chromium ($CHROMIUM, else chromium on the PATH): installed with apt when missing.
SITE ?= _build/html
SHOTS ?= _build/screenshots
site-test: install
	@[ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "site-test: installing Chromium with apt"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	    { echo "site-test: Chromium is missing and could not be installed (apt-get install chromium)" >&2; exit 1; }; }
	$(PYTHON) -m pytest -q -p no:cacheprovider site_test --site $(SITE) --shots $(SHOTS)

## readme: write the README's results tables from the runs of the paper and modern studies;
## readme-check: fail if a table is not what they give. Both use the studies' outputs that make
## book wrote, and have the studies write them again (reloading every run) only when a file of
## lenet1/ is newer.
SOURCES := $(shell find lenet1 -name '*.py')
$(STUDY)/results.md: $(SOURCES) | $(STAMP)
	$(PYTHON) -m lenet1 study paper --out $(STUDY) > /dev/null
$(MODERN)/results.md: $(SOURCES) | $(STAMP)
	$(PYTHON) -m lenet1 study modern --out $(MODERN) > /dev/null
readme: install $(STUDY)/results.md $(MODERN)/results.md
	$(PYTHON) tools/readme_results.py $(STUDY) $(MODERN)
readme-check: install $(STUDY)/results.md $(MODERN)/results.md
	$(PYTHON) tools/readme_results.py $(STUDY) $(MODERN) --check

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
