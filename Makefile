# `sam build` runs `make build-<LogicalId>` here for every function of infra/template.yaml
# (BuildMethod: makefile; CodeUri ../ is this directory; samconfig.toml builds in source),
# with ARTIFACTS_DIR set to where that function's `bootstrap` must go.
#
# All functions come from one run of scripts/lambda-package.sh: the first target runs it,
# and it compiles the binaries below in one `cargo lambda build` (the api's in a second,
# optimised for size); the stamp then makes the other thirteen a copy. (SAM's own
# rust-cargolambda method ran one `cargo lambda build --bin X` per function, each
# resolving features for its one package.)
#
# SAM passes the function's architecture to no Makefile, so it comes from MAILROOM_ARCH
# (default arm64, the template's default). scripts/sam-build.sh sets it and the template's
# Architecture parameter together, then checks every built binary against both.
#
# This list is the one map from the template's logical ids to the workspace's binaries:
# scripts/lambda-package.sh and the tests read it.
build-IngestFunction: BIN = mailroom-ingest
build-MatchFunction: BIN = mailroom-match
build-RouteFunction: BIN = mailroom-route
build-TicketFunction: BIN = mailroom-ticket
build-SweepFunction: BIN = mailroom-sweep
build-TrackFunction: BIN = mailroom-track
build-ChatFunction: BIN = mailroom-chat
build-WebhooksFunction: BIN = mailroom-webhooks
build-ApiFunction: BIN = mailroom-api
build-MailboxSyncFunction: BIN = mailroom-mailbox-sync
build-SendFunction: BIN = mailroom-send
build-ImapPollFunction: BIN = mailroom-imap-poll
build-SchedulerFunction: BIN = mailroom-scheduler
build-EventsFunction: BIN = mailroom-events

ARCH := $(or $(MAILROOM_ARCH),arm64)
LAMBDA_DIR := $(or $(CARGO_TARGET_DIR),target)/lambda
STAMP := $(LAMBDA_DIR)/.built-$(ARCH)
# What the binaries are built from: the workspace's crates (sources, templates, assets).
SOURCES := Cargo.toml Cargo.lock $(shell find shared functions -type f -not -name '*~')

# The stamp is dated when the build starts, so a source edited during the build is newer.
$(STAMP): $(SOURCES)
	mkdir -p $(LAMBDA_DIR) && touch $@.started
	# Exit 3 is a zip over the 10 MiB target of docs/performance.md: reported above, and
	# no reason to refuse to deploy (Lambda takes 50 MB zipped).
	scripts/lambda-package.sh --arch $(ARCH) >&2 || test $$? -eq 3
	rm -f $(LAMBDA_DIR)/.built-arm64 $(LAMBDA_DIR)/.built-x86_64
	mv $@.started $@

build-%Function: $(STAMP)
	@test -n "$(BIN)" || { echo "Makefile: no binary for $@ (add a 'build-...: BIN = ...' line)" >&2; exit 1; }
	@test -n "$(ARTIFACTS_DIR)" || { echo "Makefile: ARTIFACTS_DIR is not set (sam build sets it)" >&2; exit 1; }
	scripts/lambda-package.sh --check-arch $(ARCH) $(LAMBDA_DIR)/$(BIN)/bootstrap
	cp $(LAMBDA_DIR)/$(BIN)/bootstrap $(ARTIFACTS_DIR)/bootstrap
