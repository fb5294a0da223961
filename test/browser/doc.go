// Package browser tests the entrance's status page in a real headless
// browser (Debian's chromium), as real processes on loopback: TestMain
// builds entrance and raftd (without -race) into a temporary directory;
// TestStatusPageShowsNodeDown starts an entrance (--suspect-after 1s
// --down-after 2s --down-grace 0) and three raftd on free 127.0.0.1 ports,
// loads GET / with `chromium --headless --dump-dom` and checks that the
// page the browser built lists the three nodes by name, one leader and two
// followers, all alive; then it SIGKILLs a follower and loads the page again
// until the browser shows that node down while the other two are alive and
// the leader has not changed.
//
// Each load is a new browser process with a new empty --user-data-dir and
// the flags that work on a closed network (--headless --no-sandbox
// --disable-gpu --disable-quic --no-first-run --disable-background-networking
// --disable-component-update --disable-sync); it is started in its own
// process group and that group is killed if it outlives its time limit.
//
// The browser is chromium or chromium-browser on PATH. Without one the test
// is skipped, unless RAFTKV_REQUIRE_BROWSER=1 (set by .ci/run, which
// installs Debian's chromium when it is missing): then it fails.
//
// # Usage
//
//	apt-get install chromium   # Debian; once
//	go test ./test/browser/ -v
//	RAFTKV_REQUIRE_BROWSER=1 go test ./test/browser/   # fail instead of skip without a browser
package browser
