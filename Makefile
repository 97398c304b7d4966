# The two things a newcomer does: `make demo` and `make test`. Both install what they need.
# On a CPU machine the local CPU build of torch is installed first (TORCH_SPEC), so pip never pulls a
# CUDA torch; where torch is already installed (a GPU image), it is left alone.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?= -n 2

.PHONY: install install-dev demo test

# The demo draws a loss-curve figure: the plots extra (matplotlib) comes with it.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e '.[plots]'

install-dev:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	DS_BUILD_OPS=0 $(PYTHON) -m pip install -q -e '.[dev]'

demo: install
	$(PYTHON) -m nexus_pretrain.demo

# pytest exits 5 when it collects no test: report that plainly instead of as a crash.
test: install-dev
	@$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc
