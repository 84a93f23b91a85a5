#!/usr/bin/env bash
# Java compatibility suite: the official ZooKeeper 3.8 Java client and Apache Curator 5.4 recipes,
# run against an ALREADY RUNNING server.
#
# Environment:
#   ZK_CONNECT  host:port of the server (e.g. 127.0.0.1:21820)      (or ZK_PORT alone)
#   ZK_PORT     client port (used for the four-letter-word checks)
#   ZK_TARGET   zookeeper | ferrokeeper (only printed)
#   ZK_WORKDIR  scratch directory; classes are compiled to $ZK_WORKDIR/java-build (default /tmp/...)
# Optional:
#   JAVA_TEST_FILTER  regex; run only tests whose name matches (e.g. '^B\.' or 'watch')
#   JAVA_LOG_LEVEL    slf4j-simple level for client-library logging (default: error)
#
# Output: one line per test, then exactly "N passed, N failed". Exit status non-zero on any failure.
# Needs: Java 17 (javac), Debian packages libzookeeper-java, libcurator-*-java, libguava-java,
#        libslf4j-java (all jars read from /usr/share/java).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ZK_PORT:=${ZK_CONNECT##*:}}"
: "${ZK_CONNECT:=127.0.0.1:${ZK_PORT:?set ZK_CONNECT or ZK_PORT}}"
export ZK_CONNECT ZK_PORT
export ZK_TARGET="${ZK_TARGET:-unknown}"
workdir="${ZK_WORKDIR:-/tmp/ferrokeeper-java-compat.$$}"
build="$workdir/java-build"
rm -rf "$build"
mkdir -p "$build/classes"

J=/usr/share/java
cp=""
for jar in zookeeper zookeeper-jute curator-client curator-framework curator-recipes guava failureaccess \
           slf4j-api slf4j-simple netty-buffer netty-common netty-handler netty-transport netty-resolver \
           netty-codec netty-transport-native-epoll netty-transport-native-unix-common metrics-core \
           commons-cli commons-io snappy-java jackson-databind jackson-core jackson-annotations \
           findbugs-annotations; do
    [ -f "$J/$jar.jar" ] && cp="$cp:$J/$jar.jar"
done
cp="${cp#:}"
for need in zookeeper zookeeper-jute curator-client curator-framework curator-recipes guava slf4j-api; do
    [ -f "$J/$need.jar" ] || { echo "missing $J/$need.jar (install the Debian package providing it)" >&2; exit 2; }
done

javac -nowarn -encoding UTF-8 -d "$build/classes" -cp "$cp" "$here"/src/compat/*.java 2> "$build/javac.log" || {
    cat "$build/javac.log" >&2; echo "compilation failed" >&2; exit 2; }

exec java -Xss1m -Xmx512m \
    -Dorg.slf4j.simpleLogger.defaultLogLevel="${JAVA_LOG_LEVEL:-error}" \
    -Dorg.slf4j.simpleLogger.logFile=System.err \
    -Dzookeeper.sasl.client=false \
    -cp "$build/classes:$cp" compat.Harness ${JAVA_TEST_FILTER:+"$JAVA_TEST_FILTER"}
