module tetherbench

go 1.19

// errgroup for the group workload, from Debian's golang-golang-x-sync-dev (no network needed).
require golang.org/x/sync v0.1.0

replace golang.org/x/sync => /usr/share/gocode/src/golang.org/x/sync
