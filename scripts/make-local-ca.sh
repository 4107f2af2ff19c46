#!/usr/bin/env bash
# Make a throwaway certificate authority and certificates for trying TLS/mTLS locally and in tests.
#
#   scripts/make-local-ca.sh OUT_DIR [HOST...]       (default hosts: localhost 127.0.0.1)
#
# Writes into OUT_DIR:
#   ca.pem ca.key            the local CA (trust ca.pem on both sides; keep ca.key away from agents)
#   server.pem server.key    the conductor's certificate for the gateway (gRPC) and the REST API (HTTPS),
#                            valid for every HOST (IPs become IP SANs, names DNS SANs)
#   client.pem client.key    an agent's client certificate for mTLS (CN=conductor-agent)
# Never use these in production: the CA key sits next to the certificates it signed.
set -euo pipefail

out=${1:?usage: make-local-ca.sh OUT_DIR [HOST...]}
shift
hosts=("$@")
[ ${#hosts[@]} -gt 0 ] || hosts=(localhost 127.0.0.1)
mkdir -p "$out"
cd "$out"

san=""
for host in "${hosts[@]}"; do
  if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then san+="IP:$host,"; else san+="DNS:$host,"; fi
done
san=${san%,}

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Agent Conductor local CA" \
  -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

issue() {  # name, subject, extensions
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -out "$1.pem" -extfile <(printf '%s\n' "$3") 2>/dev/null
  rm -f "$1.csr"
}
issue server "/CN=${hosts[0]}" "subjectAltName=$san
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature,keyEncipherment"
issue client "/CN=conductor-agent" "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
rm -f ca.srl
chmod 600 ./*.key
echo "wrote $out: ca.pem server.pem server.key client.pem client.key (hosts: ${hosts[*]})"
