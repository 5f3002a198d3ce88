# The two set-up commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# The modules the install compiles with mypyc (shared/native.py, setup.py): editing one recompiles them.
NATIVE_SOURCES := $(shell $(PYTHON) -c 'import runpy; n = runpy.run_path("shared/native.py"); print(*map(n["source_path"], n["MODULES"]))')

.PHONY: demo test bench clean system-deps

# Real peers the tests drive (dig, h2load, nft for the HA tests' NAT, sshd, headless chromium + certutil, testssl, pebble, nginx + pagekite for the benchmark smoke run,
# PostgreSQL for the shared registry, knotd and dnsmasq as DNS peers, tinyproxy and dante as the proxies a connector may sit behind, nc for SOCKS clients),
# and gcc with Python's headers, which compile the sans-IO cores at install; installed when missing and we may use apt.
system-deps:
	@{ command -v dig && command -v h2load && command -v nft && { command -v sshd || test -x /usr/sbin/sshd; } && command -v chromium && command -v certutil && command -v testssl && command -v pebble && { command -v nginx || test -x /usr/sbin/nginx; } && command -v pagekite && test -x /usr/sbin/knotd && test -x /usr/sbin/dnsmasq && command -v tinyproxy && test -x /usr/sbin/danted && command -v nc && ls /usr/lib/postgresql/*/bin/pg_ctl && command -v gcc && test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h"; } >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9-dnsutils nghttp2-client nftables openssh-server chromium libnss3-tools testssl.sh pebble nginx pagekite postgresql knot dnsmasq tinyproxy dante-server netcat-openbsd gcc python3-dev >/dev/null; } || \
		echo "note: install bind9-dnsutils (dig), nghttp2-client (h2load), nftables (nft), openssh-server (sshd), chromium, libnss3-tools (certutil), testssl.sh, pebble, nginx, pagekite, postgresql, knot, dnsmasq, tinyproxy, dante-server and netcat-openbsd for the DNS, HTTP/2, HA, SSH, browser, TLS, ACME, registry, proxy and benchmark tests, and gcc and python3-dev to compile the sans-IO cores (else they run as pure Python)" >&2

$(STAMP): pyproject.toml setup.py $(NATIVE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash deploy/demo.sh

# Then the protocol, HTTP/1.1, routing and stream-serving tests again on the pure-Python modules the compiled ones replace (shared/native.py).
test: system-deps $(STAMP)
	$(VENV)/bin/pytest -n 3 --dist loadfile
	BURROW_PURE_PYTHON=1 $(VENV)/bin/pytest -q -n 3 --dist loadfile tests/shared tests/edge/visitors tests/edge/routing tests/connector/origins tests/connector/tunnel tests/e2e/test_http1_table.py

bench: $(STAMP)
	$(VENV)/bin/python bench/tunnel_bench.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache shared/native_build.json
	find shared edge connector -name '*.so' -delete
