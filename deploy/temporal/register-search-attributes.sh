#!/bin/sh
# Registers dr-orchestrator's custom search attributes in a Temporal namespace. Idempotent: safe to rerun.
#
# Used by the `temporal-search-attributes` one-shot service of docker-compose.yml (temporalio/admin-tools image),
# and usable by hand against any self-hosted cluster with the `temporal` CLI on PATH:
#
#   TEMPORAL_ADDRESS=temporal.example.internal:7233 TEMPORAL_NAMESPACE=dr \
#   DR_SEARCH_ATTRIBUTES="DrPlan=Keyword DrMode=Keyword DrPhase=Keyword DrStatus=Keyword DrInitiator=Keyword" \
#   sh deploy/temporal/register-search-attributes.sh
#
# The `temporal` CLI also reads TEMPORAL_TLS_CLIENT_CERT_PATH / TEMPORAL_TLS_CLIENT_KEY_PATH /
# TEMPORAL_TLS_SERVER_CA_CERT_PATH / TEMPORAL_API_KEY and its profile file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE).
#
# Environment:
#   TEMPORAL_ADDRESS       host:port of the frontend (required)
#   TEMPORAL_NAMESPACE     namespace to register in (default: default)
#   DR_SEARCH_ATTRIBUTES   space-separated Name=Type pairs (required)
#   DR_INIT_ATTEMPTS       attempts per wait or registration before giving up (default: 60)
#   DR_INIT_SLEEP_SECONDS  pause between attempts (default: 2)
set -eu
set -f  # DR_SEARCH_ATTRIBUTES is word-split below; never glob it

address="${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required (host:port)}"
namespace="${TEMPORAL_NAMESPACE:-default}"
attributes="${DR_SEARCH_ATTRIBUTES:?DR_SEARCH_ATTRIBUTES is required (space-separated Name=Type pairs)}"
attempts="${DR_INIT_ATTEMPTS:-60}"
pause="${DR_INIT_SLEEP_SECONDS:-2}"

# Validate every entry before touching the server, so a typo cannot leave a half-registered namespace.
for pair in $attributes; do
    name="${pair%%=*}"
    type="${pair#*=}"
    if [ "$name" = "$pair" ] || [ -z "$name" ] || [ -z "$type" ]; then
        echo "invalid entry '$pair' in DR_SEARCH_ATTRIBUTES: expected Name=Type" >&2
        exit 2
    fi
done

wait_for() {  # wait_for DESCRIPTION COMMAND [ARGS...]
    what="$1"
    shift
    n=1
    until "$@" > /dev/null 2>&1; do
        if [ "$n" -ge "$attempts" ]; then
            echo "gave up waiting for $what after $n attempts" >&2
            exit 1
        fi
        echo "waiting for $what ($n/$attempts)"
        n=$((n + 1))
        sleep "$pause"
    done
}

# auto-setup creates the namespace only once the server is up, so wait for both.
wait_for "Temporal at $address" temporal operator cluster health --address "$address"
wait_for "namespace $namespace" temporal operator namespace describe --address "$address" --namespace "$namespace"

for pair in $attributes; do
    name="${pair%%=*}"
    type="${pair#*=}"
    n=1
    while :; do
        if out=$(temporal operator search-attribute create --address "$address" --namespace "$namespace" \
            --name "$name" --type "$type" 2>&1); then
            echo "registered $name ($type)"
            break
        fi
        case "$out" in
            # The CLI refuses a name that exists with another type: a conflict to fix by hand, not to retry.
            *"different type"*)
                echo "$name already exists with a type other than $type: $out" >&2
                exit 1
                ;;
            # Older servers answer AlreadyExists where newer ones succeed: both mean it is there, with this type.
            *"already exists"* | *"AlreadyExists"*)
                echo "$name ($type) was already registered"
                break
                ;;
        esac
        if [ "$n" -ge "$attempts" ]; then
            echo "could not register $name ($type) after $n attempts: $out" >&2
            exit 1
        fi
        echo "retrying $name ($n/$attempts): $out"
        n=$((n + 1))
        sleep "$pause"
    done
done

echo "search attributes ready in namespace $namespace: $attributes"
