# shellcheck shell=bash
# Load from loopback comes from one address (or a few of 127.0.0.0/24), where a real tracker's
# clients are many addresses and networks: the caps per client and per network, which would
# refuse most of it, are lifted; the others stay as shipped. So is the budget of offers per
# socket: a simulated browser announces far more often than a real one (a minute's worth a
# second), and a bench of the forwarding itself would measure the budget instead.
#
#   env $(loopback_env BIN) BIN ...
#
# prints those settings as EDGETRACKER__SECTION__KEY=value, each only if BIN has the key (so an
# older build, compared side by side, does not refuse a key it does not know).
loopback_env() {
    local known
    known=$("$1" --print-config)
    local key value section name
    for setting in \
        TRACKER__MAX_PEERS_PER_ADDRESS=1000000 \
        TRACKER__RATE_LIMIT_PER_MINUTE=0 \
        TRACKER__NEW_TORRENTS_PER_MINUTE=0 \
        NETWORK__HTTP_MAX_CONNECTIONS_PER_ADDRESS=1000000 \
        NETWORK__HTTP_MAX_CONNECTIONS_PER_NETWORK=1000000 \
        WEBTORRENT__MAX_CONNECTIONS_PER_ADDRESS=1000000 \
        WEBTORRENT__MAX_CONNECTIONS_PER_NETWORK=1000000 \
        WEBTORRENT__MAX_TORRENTS_PER_CONNECTION=1000000 \
        WEBTORRENT__OFFERS_PER_MINUTE=0; do
        key=${setting%%=*}
        value=${setting#*=}
        section=${key%%__*}
        name=${key#*__}
        if grep -qi "^${name}[ =]" <<<"$known"; then
            echo "EDGETRACKER__${section}__${name}=${value}"
        fi
    done
}
