# One way to do each thing. Everything runs with the current python3; point LENET1_DATA at a
# folder holding zip.train.gz and zip.test.gz (or let the loader download them to ./data).
PYTHON ?= python3
STAMP := .installed.stamp

.PHONY: install test book train clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

## test: unit tests, then the notebooks in quick mode (nbval)
test: install
	$(PYTHON) -m pytest -q tests
	LENET1_QUICK=1 $(PYTHON) -m pytest -q --nbval notebooks

## book: execute every chapter in full mode and build the site strictly into _build/html
book: install
	jupyter-book build -W -n --keep-going .

## train: the paper's protocol, 23 passes, into runs/paper
train: install
	$(PYTHON) -m lenet1 train --passes 23 --out runs/paper

clean:
	rm -rf _build $(STAMP)
