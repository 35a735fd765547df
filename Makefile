# The two commands a newcomer needs: `make demo` and `make test`.
# Each installs what it needs on a fresh Debian machine with Python 3.11.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := dcmtk dicom3tools chromium fonts-dejavu-core postgresql nginx coturn libturbojpeg0
# The suites that run a second time with the index on PostgreSQL instead of SQLite.
POSTGRES_TESTS := tests/archive/test_ingest_index.py tests/archive/test_migrations.py tests/dicomweb tests/worklist tests/hl7 tests/security tests/forward tests/backup tests/dose tests/jobs tests/server/test_leases.py tests/server/test_node_registry.py tests/archive/blobs/test_fenced_janitor.py tests/archive/blobs/test_janitor_failover.py
# The suites that run a second time with the store on S3 (SeaweedFS) instead of the data dir.
S3_TESTS := tests/archive tests/dicomweb tests/wsi
# The suites of several `tessera serve` nodes sharing one PostgreSQL index and one S3 bucket.
CLUSTER_TESTS := tests/cluster
STAMP := $(VENV)/.installed
# Every Python dependency, pinned: installs take exactly these versions (`make lock` rewrites it).
CONSTRAINTS := constraints.txt
LOCK_TOOLS := .venv-lock

.PHONY: demo test test-postgres test-s3 test-cluster lint bench lock system-deps npm-deps clean

demo: $(STAMP) npm-deps
	$(PY) -m hub.cli demo

test: $(STAMP) npm-deps system-deps
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	$(MAKE) test-postgres
	$(MAKE) test-s3
	$(MAKE) test-cluster

test-postgres: $(STAMP) system-deps
	tests/with_postgres.sh $(PY) -m pytest -q -p no:cacheprovider $(POSTGRES_TESTS)

test-s3: $(STAMP) system-deps
	tests/with_seaweedfs.sh $(PY) -m pytest -q -p no:cacheprovider $(S3_TESTS)

test-cluster: $(STAMP) system-deps
	tests/with_postgres.sh tests/with_seaweedfs.sh $(PY) -m pytest -q -p no:cacheprovider $(CLUSTER_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m bench.run

system-deps:
	@missing=""; \
	command -v storescu >/dev/null || missing="$$missing dcmtk"; \
	command -v dciodvfy >/dev/null || missing="$$missing dicom3tools"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	/sbin/ldconfig -p | grep -q libturbojpeg.so.0 || missing="$$missing libturbojpeg0"; \
	[ -x /usr/bin/turnserver ] || missing="$$missing coturn"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; \
	fi

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c $(CONSTRAINTS) -e '.[test,bench,postgres,s3]'
	touch $(STAMP)

# Re-resolve $(CONSTRAINTS) from pyproject.toml, keeping its pins where they still fit;
# `make lock LOCK_ARGS=--upgrade` moves everything to the newest versions pyproject allows.
lock:
	test -x $(LOCK_TOOLS)/bin/uv || { $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install -q uv==0.13.8; }
	$(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --extra test --extra bench --extra postgres --extra s3 \
	  --python-version 3.11 --custom-compile-command 'make lock' $(LOCK_ARGS) -o $(CONSTRAINTS)

npm-deps: web/node_modules/.package-lock.json

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --silent

clean:
	rm -rf $(VENV) $(LOCK_TOOLS) web/node_modules
