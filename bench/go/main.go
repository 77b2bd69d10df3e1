// SPDX-License-Identifier: MIT

// Command tetherbench-go is the Go twin of bench/tether-bench.c: the same workloads, the same
// program shape and the same output (`name value unit` lines), so that scripts/bench can put the
// two side by side. Each workload here mirrors its C case line for line; change both together.
//
// Usage: tetherbench-go WORKLOAD [COUNT]
//
// The runtime runs with its defaults (GOMAXPROCS = all CPUs) and cold: nothing is warmed up
// before the timed part, and RSS is read from before the first spawn.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type workload struct {
	name  string
	count int // the default COUNT
	run   func(n int)
}

// The workloads, in the order `tetherbench-go` lists them. scripts/bench selects by name.
var workloads = []workload{
	{"spawn", 1000000, benchSpawn},
	{"parked", 1000000, benchParked},
}

func report(name string, value float64, unit string) {
	fmt.Printf("%s %.1f %s\n", name, value, unit)
}

// rss returns the resident set size in bytes, from /proc/self/statm as the C twin reads it.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: /proc/self/statm: %v\n", err)
		os.Exit(1)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		fmt.Fprintf(os.Stderr, "tetherbench-go: /proc/self/statm: unexpected %q\n", b)
		os.Exit(1)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: /proc/self/statm: %v\n", err)
		os.Exit(1)
	}
	return pages * int64(os.Getpagesize())
}

// spawn: n goroutines that each only signal a wait group; the time from before the first spawn
// to after the wait, per goroutine.
func benchSpawn(n int) {
	var wg sync.WaitGroup
	wg.Add(n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	dt := time.Since(t0)
	report("spawn", float64(dt.Nanoseconds())/float64(n), "ns/op")
}

// parked: n goroutines that each block forever on a wait group that never reaches zero; the RSS
// growth per goroutine once all have parked, and the time to spawn and park them. Then they are
// released and waited for, so the run ends clean.
func benchParked(n int) {
	var started, never, finished sync.WaitGroup
	never.Add(1)
	started.Add(n)
	finished.Add(n)
	before := rss()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			never.Wait()
			finished.Done()
		}()
	}
	started.Wait()
	dt := time.Since(t0)
	after := rss()
	never.Done()
	finished.Wait()
	report("parked", float64(after-before)/float64(n), "bytes/coroutine")
	report("parked_time", float64(dt.Nanoseconds())/float64(n), "ns/op")
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: tetherbench-go WORKLOAD [COUNT]\nworkloads:")
	for _, w := range workloads {
		fmt.Fprintf(os.Stderr, " %s", w.name)
	}
	fmt.Fprintln(os.Stderr)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		usage()
	}
	for _, w := range workloads {
		if w.name != os.Args[1] {
			continue
		}
		n := w.count
		if len(os.Args) == 3 {
			v, err := strconv.Atoi(os.Args[2])
			if err != nil || v <= 0 {
				fmt.Fprintf(os.Stderr, "tetherbench-go: bad COUNT %q\n", os.Args[2])
				os.Exit(2)
			}
			n = v
		}
		w.run(n)
		return
	}
	fmt.Fprintf(os.Stderr, "tetherbench-go: unknown workload %q\n", os.Args[1])
	usage()
}
