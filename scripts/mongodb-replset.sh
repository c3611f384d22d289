#!/usr/bin/env bash
# Start a one-member MongoDB replica set in Docker (change streams, transactions)
# and print the URI to test against. The GitHub workflow runs exactly this.
#   usage: scripts/mongodb-replset.sh [VERSION]      (default 7.0)
#   then:  NSN_TEST_MONGODB_URI="$(scripts/mongodb-replset.sh)" python -m pytest
set -euo pipefail
version=${1:-7.0}
name=nsn-replset
docker rm -f "$name" >/dev/null 2>&1 || true
docker run -d --name "$name" -p 127.0.0.1:27017:27017 "mongo:$version" \
  --replSet rs0 --bind_ip_all >/dev/null
for _ in $(seq 1 60); do
  if docker exec "$name" mongosh --quiet --eval 'db.adminCommand({ping: 1}).ok' >/dev/null 2>&1; then
    break
  fi
  sleep 1
done
docker exec "$name" mongosh --quiet --eval \
  'rs.initiate({_id: "rs0", members: [{_id: 0, host: "localhost:27017"}]})' >/dev/null
for _ in $(seq 1 60); do
  state=$(docker exec "$name" mongosh --quiet --eval 'rs.status().myState' 2>/dev/null || true)
  [ "$state" = "1" ] && break
  sleep 1
done
echo "mongodb://localhost:27017/?replicaSet=rs0&directConnection=true"
