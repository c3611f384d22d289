#!/usr/bin/env bash
# Start a minimal sharded cluster in Docker: a config server replica set, one
# shard replica set and a mongos on localhost:27017; print the mongos URI.
# The GitHub workflow runs exactly this, then `nsn-store init` and `nsn-store shard`.
#   usage: scripts/mongodb-sharded.sh [VERSION]      (default 7.0)
set -euo pipefail
version=${1:-7.0}
net=nsn-sharded
docker rm -f nsn-cfg nsn-shard0 nsn-mongos >/dev/null 2>&1 || true
docker network rm "$net" >/dev/null 2>&1 || true
docker network create "$net" >/dev/null

wait_ping() {
  for _ in $(seq 1 60); do
    docker exec "$1" mongosh --quiet --port "$2" --eval 'db.adminCommand({ping: 1}).ok' \
      >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "error: $1 did not answer" >&2
  return 1
}

docker run -d --name nsn-cfg --network "$net" "mongo:$version" \
  --configsvr --replSet cfg --port 27019 --bind_ip_all >/dev/null
docker run -d --name nsn-shard0 --network "$net" "mongo:$version" \
  --shardsvr --replSet shard0 --port 27018 --bind_ip_all >/dev/null
wait_ping nsn-cfg 27019
wait_ping nsn-shard0 27018
docker exec nsn-cfg mongosh --quiet --port 27019 --eval \
  'rs.initiate({_id: "cfg", configsvr: true, members: [{_id: 0, host: "nsn-cfg:27019"}]})' >/dev/null
docker exec nsn-shard0 mongosh --quiet --port 27018 --eval \
  'rs.initiate({_id: "shard0", members: [{_id: 0, host: "nsn-shard0:27018"}]})' >/dev/null
sleep 5
docker run -d --name nsn-mongos --network "$net" -p 127.0.0.1:27017:27017 "mongo:$version" \
  mongos --configdb cfg/nsn-cfg:27019 --port 27017 --bind_ip_all >/dev/null
wait_ping nsn-mongos 27017
for _ in $(seq 1 30); do
  docker exec nsn-mongos mongosh --quiet --eval \
    'sh.addShard("shard0/nsn-shard0:27018").ok' >/dev/null 2>&1 && break
  sleep 2
done
echo "mongodb://localhost:27017"
