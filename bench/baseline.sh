#!/usr/bin/env bash
# The baseline: what a person would otherwise write instead of syncer, a cron
# job of curl, jq and sqlite3 doing the same sync one connection after
# another. bench/run measures it beside syncer, on the same accounts, data
# and database layout, so the comparison is like for like:
#
#   - it reads the active connections and their refresh tokens from the data
#     directory syncer uses (snapshots.db, and tokens.db without a token key);
#   - per connection it refreshes the token (EstateGuru's rotated refresh
#     token is saved, synchronous=FULL, before the new access token is used),
#     fetches users/me or userInvestments, and writes the snapshot, money in
#     exact cents, into the same tables in one transaction per connection,
#     replacing the period's (UTC day's) snapshot as syncer does;
#   - secrets go to curl and jq through stdin and the environment, never
#     through argv (where `ps` would show them).
#
# It does less than syncer (no retries, no locking against another run, no
# run history, no error classification), so it is, if anything, flattered.
#
# Environment (bench/sandboxd writes it): SYNCER_DATA_DIR,
# SYNCER_EVERREAL_CLIENT_ID, SYNCER_EVERREAL_CLIENT_SECRET,
# SYNCER_ESTATEGURU_CLIENT_ID, SYNCER_ESTATEGURU_CLIENT_SECRET.
# Exit 0 when every connection synced, 1 when one failed, 2 on a usage error.
set -uo pipefail

missing=()
for tool in curl jq sqlite3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "baseline.sh: needs ${missing[*]} (Debian/Ubuntu: sudo apt-get install -y curl jq sqlite3)" >&2
  exit 2
fi

dir=${SYNCER_DATA_DIR:?baseline.sh: set SYNCER_DATA_DIR to a syncer data directory}
snapshots=$dir/snapshots.db
vault=$dir/tokens.db
for f in "$snapshots" "$vault"; do
  [[ -r $f ]] || { echo "baseline.sh: $f is missing or unreadable" >&2; exit 2; }
done
export SYNCER_EVERREAL_CLIENT_ID SYNCER_EVERREAL_CLIENT_SECRET SYNCER_ESTATEGURU_CLIENT_ID SYNCER_ESTATEGURU_CLIENT_SECRET
export TZ=UTC
printf -v period '%(%Y-%m-%dT00:00:00Z)T' -1
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

# sq quotes a value for SQL; cents turns "1234.5" or 1234.5 into 123450,
# exactly (text surgery, never through a float).
read -r -d '' jqlib <<'JQ'
def sq: if . == null then "NULL" else "'" + (tostring | gsub("'"; "''")) + "'" end;
def cents: tostring | split(".") as $p | ($p[0] + (($p[1] // "") + "00")[0:2]) | tonumber;
def bool: if . then 1 else 0 end;
JQ

connections=$(sqlite3 -batch -separator $'\t' "$snapshots" \
  "ATTACH '$vault' AS v; SELECT c.id, c.name, c.provider, c.base_url, t.refresh_token
   FROM connection c JOIN v.token t ON t.connection_id = c.id
   WHERE c.state = 'active' ORDER BY c.name") || exit 2

ok=0 failed=0
fail() { echo "baseline.sh: $1: $2" >&2; failed=$((failed + 1)); }

# write_snapshot runs the SQL on stdin in snapshots.db, one transaction.
write_snapshot() {
  { printf '.timeout 10000\nPRAGMA foreign_keys=ON;\nBEGIN IMMEDIATE;\n'; cat; printf 'COMMIT;\n'; } |
    sqlite3 -batch -bail "$snapshots" >/dev/null
}

everreal() { # id name base refresh
  local id=$1 name=$2 base=$3 tok access me now
  tok=$(RT=$4 jq -cn '{grant_type: "refresh_token", client_id: env.SYNCER_EVERREAL_CLIENT_ID,
          client_secret: env.SYNCER_EVERREAL_CLIENT_SECRET, refresh_token: env.RT}' |
        curl -sS --fail-with-body --max-time 30 -H 'Content-Type: application/json' \
          --data-binary @- "$base/accounts/oauth/token") || { fail "$name" "refresh failed"; return; }
  access=$(jq -er .access_token <<<"$tok") || { fail "$name" "no access token"; return; }
  me=$(printf 'header = "Authorization: Bearer %s"\n' "$access" |
       curl -sS --fail-with-body --max-time 30 -K - "$base/accounts/api/users/me") ||
    { fail "$name" "users/me failed"; return; }
  printf '%s' "$me" >"$tmp/raw"
  printf -v now '%(%Y-%m-%dT%H:%M:%SZ)T' -1
  jq -r --argjson id "$id" --arg p "$period" --arg now "$now" --arg raw "$tmp/raw" "$jqlib"'
    "DELETE FROM everreal_snapshot WHERE connection_id = \($id) AND snapshot_at = \($p | sq);",
    "INSERT INTO everreal_snapshot (connection_id, snapshot_at, fetched_at, user_id, email, first_name,
       last_name, is_active, is_tenant, terms_accepted, language, company_id, company_name, partner_id,
       partner_name, partner_subdomain, scopes, raw) VALUES (\($id), \($p | sq), \($now | sq), \(.id | sq),
       \(.email | sq), \(.firstName | sq), \(.lastName | sq), \(.isActive | bool), \(.isTenant | bool),
       \(.areTermsAccepted | bool), \(.profileData.language | sq), \(.currentCompany.id | sq),
       \(.currentCompany.name | sq), \(.currentCompany.partner.id | sq), \(.currentCompany.partner.name | sq),
       \(.currentCompany.partner.subdomain | sq), \(.tokenInfo.scope // [] | tojson | sq),
       CAST(readfile(\($raw | sq)) AS TEXT));",
    (.companies // [] | to_entries[] | "INSERT INTO everreal_company (connection_id, snapshot_at, position,
       company_id, name, is_default) VALUES (\($id), \($p | sq), \(.key), \(.value.id | sq),
       \(.value.name | sq), \(.value.isDefault | bool));"),
    "UPDATE connection SET last_success_at = \($now | sq), last_error = NULL, updated_at = \($now | sq)
       WHERE id = \($id);"' <<<"$me" | write_snapshot || { fail "$name" "writing the snapshot failed"; return; }
  ok=$((ok + 1))
}

estateguru() { # id name base refresh
  local id=$1 name=$2 base=$3 tok access refresh rid data now
  tok=$(printf 'user = "%s:%s"\ndata = "grant_type=refresh_token"\ndata-urlencode = "refresh_token=%s"\n' \
          "$SYNCER_ESTATEGURU_CLIENT_ID" "$SYNCER_ESTATEGURU_CLIENT_SECRET" "$4" |
        curl -sS --fail-with-body --max-time 30 -K - "$base/oauth/token") || { fail "$name" "refresh failed"; return; }
  tok=$(jq -er 'if (.access_token | type) == "string" and (.refresh_token | type) == "string"
                then .access_token, .refresh_token else error("no tokens") end' <<<"$tok" 2>/dev/null) ||
    { fail "$name" "no tokens in the refresh answer"; return; }
  access=${tok%%$'\n'*} refresh=${tok#*$'\n'}
  # The old refresh token is dead now: keep the new one before anything else.
  printf -v now '%(%Y-%m-%dT%H:%M:%SZ)T' -1
  printf ".timeout 10000\nPRAGMA synchronous=FULL;\nUPDATE token SET refresh_token = '%s', access_token = NULL,
    access_expires_at = NULL, generation = generation + 1, updated_at = '%s' WHERE connection_id = %d;\n" \
    "${refresh//\'/\'\'}" "$now" "$id" | sqlite3 -batch -bail "$vault" >/dev/null ||
    { fail "$name" "saving the refresh token failed"; return; }
  read -r rid </proc/sys/kernel/random/uuid
  data=$(printf 'header = "Authorization: Bearer %s"\ndata = "requestId=%s"\n' "$access" "$rid" |
         curl -sS --fail-with-body --max-time 60 -K - "$base/userInformation/userInvestments") ||
    { fail "$name" "userInvestments failed"; return; }
  printf '%s' "$data" >"$tmp/raw"
  printf -v now '%(%Y-%m-%dT%H:%M:%SZ)T' -1
  jq -r --argjson id "$id" --arg p "$period" --arg now "$now" --arg raw "$tmp/raw" "$jqlib"'
    "DELETE FROM estateguru_snapshot WHERE connection_id = \($id) AND snapshot_at = \($p | sq);",
    "INSERT INTO estateguru_snapshot (connection_id, snapshot_at, fetched_at, currency, cash_cents,
       investments, investment_amount_cents, market_value_cents, principal_left_cents, profit_cents,
       realized_income_cents, raw) VALUES (\($id), \($p | sq), \($now | sq), \(.currency | sq),
       \(.cash | cents), \(.investments // [] | length), 0, 0, 0, 0, 0, CAST(readfile(\($raw | sq)) AS TEXT));",
    (.investments // [] | to_entries[] | .key as $i | .value |
      "INSERT INTO estateguru_investment (connection_id, snapshot_at, position, loan_id, name, quantity,
         investment_amount_cents, market_value_cents, principal_left_cents, profit_cents,
         realized_income_cents, change_cents, resource_path) VALUES (\($id), \($p | sq), \($i),
         \(.resourcePath | split("/") | map(select(length > 0)) | last | sq), \(.name | sq),
         \(.quantity | tonumber), \(.investment_amount | cents), \(.market_value | cents),
         \(.principal_left | cents), \(.profit | cents), \(.realized_income | cents), \(.change | cents),
         \(.resourcePath | sq));"),
    "UPDATE estateguru_snapshot SET (investment_amount_cents, market_value_cents, principal_left_cents,
       profit_cents, realized_income_cents) = (SELECT coalesce(sum(investment_amount_cents), 0),
       coalesce(sum(market_value_cents), 0), coalesce(sum(principal_left_cents), 0),
       coalesce(sum(profit_cents), 0), coalesce(sum(realized_income_cents), 0)
       FROM estateguru_investment WHERE connection_id = \($id) AND snapshot_at = \($p | sq))
       WHERE connection_id = \($id) AND snapshot_at = \($p | sq);",
    "UPDATE connection SET last_success_at = \($now | sq), last_error = NULL, updated_at = \($now | sq)
       WHERE id = \($id);"' <<<"$data" | write_snapshot || { fail "$name" "writing the snapshot failed"; return; }
  ok=$((ok + 1))
}

while IFS=$'\t' read -r id name provider base refresh; do
  [[ -n $id ]] || continue
  if [[ $refresh == gcm1:* ]]; then
    fail "$name" "its tokens are encrypted (SYNCER_TOKEN_KEY_FILE); the baseline reads plain tokens only"
    continue
  fi
  case $provider in
    everreal) everreal "$id" "$name" "$base" "$refresh" ;;
    estateguru) estateguru "$id" "$name" "$base" "$refresh" ;;
    *) fail "$name" "unknown provider $provider" ;;
  esac
done <<<"$connections"

echo "baseline.sh: $ok synced, $failed failed" >&2
((failed == 0))
