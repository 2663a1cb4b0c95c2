# The two commands a newcomer runs: `make demo` and `make test`. Both create the
# environments they need on first use (torch pinned to the CPU wheel, see pyproject.toml).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAVA_VENV := .venv-lava
LAVA_STAMP := $(LAVA_VENV)/.installed
DEMO_DIR ?= runs/demo
export MINARI_DATASETS_PATH ?= $(CURDIR)/runs/datasets

.PHONY: venv lava-env test demo demo-spread results finetune-demo ablate

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	@# packages the tests run against, --no-deps so that the torch pin holds: the third-party
	@# NIR readers (norse declares torchvision, i.e. another torch, and its NIR import needs
	@# neither; rockpool needs only scipy) and NeuroBench (its declared deps pull torchaudio,
	@# tonic and another torch; its metrics need none of them: see pyproject.toml), and
	@# Stable-Baselines3 and its contrib algorithms for `collect --expert sb3:PATH` (their other deps are here)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps norse==1.1.0 rockpool==3.1.0 scipy==1.17.1 \
		neurobench==2.3.0 tqdm==4.70.1 stable-baselines3==2.9.2 sb3-contrib==2.9.2
	@touch $(STAMP)

# Lava (lava-nc 0.10) needs Python <= 3.10: a sidecar venv without torch, with spikingmind
# itself installed editable and without dependencies (the sidecar imports its NumPy parts).
lava-env: $(LAVA_STAMP)

$(LAVA_STAMP): $(STAMP)
	$(BIN)/python -m spikingmind.export.lava_env --venv $(LAVA_VENV)
	@touch $(LAVA_STAMP)

test: venv lava-env
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: venv lava-env
	bash scripts/demo.sh $(DEMO_DIR)

# The run-to-run spread of `make demo`'s spiking DT: trained with seeds 0, 1, 2, each evaluated at
# target 500 and 100 (~16 min on 2 cores); `make results` renders runs/demo-spread/spread.json.
demo-spread: venv
	$(BIN)/python scripts/demo_spread.py --demo-dir $(DEMO_DIR)

# README results section (and docs/results/summary.json) from runs/results/ (envs without result
# files show "not run"); `make results RUN=1 [ENVS=CartPole-v1,...] [JOBS=2]` first produces them:
# every model with training seeds 0, 1, 2, 20 unseen evaluation seeds each, the conditioning sweep,
# exports, energy and latency (JOBS: trainings side by side).
# KEEP=1: parts without result files here keep their text (and summary.json entry) from the last render.
# STAGES=condition-config: with RUN=1, only the stages whose names start with it (comma-separated prefixes).
results: venv
	$(BIN)/python scripts/results.py $(if $(RUN),--run) $(if $(ENVS),--envs $(ENVS)) $(if $(JOBS),--jobs $(JOBS)) \
		$(if $(KEEP),--keep-missing) $(if $(STAGES),--stages $(STAGES))

# The README's fine-tuning section: weak CartPole demonstrations -> offline SNN -> REINFORCE (~15 min on 2 cores).
finetune-demo: venv
	bash scripts/finetune_demo.sh

# The README's ablation section: T in 1,2,4,8 and K in 1,5,10,20 on CartPole, 3 seeds (~30 min, 2 cores).
ablate: venv
	$(BIN)/spikingmind ablate --env CartPole-v1 --config configs/ablate-cartpole.toml \
		--time-steps 1,2,4,8 --context 1,5,10,20 --seeds 3 --episodes 20
