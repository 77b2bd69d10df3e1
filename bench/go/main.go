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
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
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
	{"pingpong", 1000000, benchPingpong},
	{"buffered", 10000000, benchBuffered},
	{"select", 4000000, benchSelect},
	{"timers", 100000, benchTimers},
	{"mutex", 1000000, benchMutex},
	{"ctxcancel", 100000, benchCtxcancel},
	{"group", 1000000, benchGroup},
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

// sumBelow is 0 + 1 + ... + (m - 1): what the receiving side of a channel workload must get.
func sumBelow(m int) int { return m * (m - 1) / 2 }

// wrongSum reports a wrong result and exits 1, as the C twin does.
func wrongSum(name string, got, want int) {
	fmt.Fprintf(os.Stderr, "tetherbench-go: %s: received values sum to %d, expected %d\n", name, got, want)
	os.Exit(1)
}

// pingpong: two goroutines and two unbuffered channels; A sends i on c1, B receives it and sends
// it back on c2, A receives it; n round trips, the time per round trip.
func benchPingpong(n int) {
	c1, c2 := make(chan int), make(chan int)
	var wg sync.WaitGroup
	var sum int
	wg.Add(2)
	t0 := time.Now()
	go func() { // A
		s := 0
		for i := 0; i < n; i++ {
			c1 <- i
			s += <-c2
		}
		sum = s
		wg.Done()
	}()
	go func() { // B
		for i := 0; i < n; i++ {
			c2 <- <-c1
		}
		wg.Done()
	}()
	wg.Wait()
	dt := time.Since(t0)
	if sum != sumBelow(n) {
		wrongSum("pingpong", sum, sumBelow(n))
	}
	report("pingpong", float64(dt.Nanoseconds())/float64(n), "ns/op")
}

// buffered: one producer and one consumer on a channel with room for 1024; the producer sends n
// values and closes, the consumer ranges until closed; the time per value.
func benchBuffered(n int) {
	c := make(chan int, 1024)
	var wg sync.WaitGroup
	var sum int
	wg.Add(2)
	t0 := time.Now()
	go func() { // producer
		for i := 0; i < n; i++ {
			c <- i
		}
		close(c)
		wg.Done()
	}()
	go func() { // consumer
		s := 0
		for v := range c {
			s += v
		}
		sum = s
		wg.Done()
	}()
	wg.Wait()
	dt := time.Since(t0)
	if sum != sumBelow(n) {
		wrongSum("buffered", sum, sumBelow(n))
	}
	report("buffered", float64(dt.Nanoseconds())/float64(n), "ns/op")
}

// select: four producers, each sending on its own unbuffered channel (n/4 each, the remainder to
// the first ones), and one consumer selecting over the four receives n times; the time per
// message.
func benchSelect(n int) {
	var c [4]chan int
	var m [4]int
	want := 0
	for k := range c {
		m[k] = n / 4
		if k < n%4 {
			m[k]++
		}
		want += sumBelow(m[k])
	}
	for k := range c {
		c[k] = make(chan int)
	}
	var wg sync.WaitGroup
	var sum int
	wg.Add(5)
	t0 := time.Now()
	for k := 0; k < 4; k++ {
		go func(ch chan int, m int) { // producer
			for i := 0; i < m; i++ {
				ch <- i
			}
			wg.Done()
		}(c[k], m[k])
	}
	go func() { // consumer
		s := 0
		for i := 0; i < n; i++ {
			select {
			case v := <-c[0]:
				s += v
			case v := <-c[1]:
				s += v
			case v := <-c[2]:
				s += v
			case v := <-c[3]:
				s += v
			}
		}
		sum = s
		wg.Done()
	}()
	wg.Wait()
	dt := time.Since(t0)
	if sum != want {
		wrongSum("select", sum, want)
	}
	report("select", float64(dt.Nanoseconds())/float64(n), "ns/op")
}

// timerSleeps is how many times each timers goroutine sleeps.
const timerSleeps = 10

// timers: n goroutines each sleeping 1 ms ten times, waited for with a wait group; the time per
// sleep (total / (n * 10)).
func benchTimers(n int) {
	var wg sync.WaitGroup
	wg.Add(n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			for j := 0; j < timerSleeps; j++ {
				time.Sleep(time.Millisecond)
			}
			wg.Done()
		}()
	}
	wg.Wait()
	dt := time.Since(t0)
	report("timers", float64(dt.Nanoseconds())/(float64(n)*timerSleeps), "ns/op")
}

// mutexCoros is how many goroutines share the mutex in the mutex workload.
const mutexCoros = 1000

// mutex: 1000 goroutines each locking and unlocking one shared sync.Mutex n/1000 times around a
// tiny critical section (a counter), waited for with a wait group; the time per lock/unlock pair.
func benchMutex(n int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	coros := mutexCoros
	if n < coros {
		coros = n
	}
	per := n / coros
	counter := 0
	wg.Add(coros)
	t0 := time.Now()
	for i := 0; i < coros; i++ {
		go func() {
			for j := 0; j < per; j++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	dt := time.Since(t0)
	if counter != coros*per {
		fmt.Fprintf(os.Stderr, "tetherbench-go: mutex: counter %d, want %d\n", counter, coros*per)
		os.Exit(1)
	}
	report("mutex", float64(dt.Nanoseconds())/float64(coros*per), "ns/op")
}

// ctxFanout is the number of children per node of the ctxcancel tree.
const ctxFanout = 10

// ctxcancel: a tree of n contexts built breadth first (node i's parent is (i-1)/ctxFanout), a
// goroutine blocked on each leaf's Done channel; the time from cancelling the root until every
// goroutine has returned, per context.
func benchCtxcancel(n int) {
	v := make([]context.Context, n)
	cancels := make([]context.CancelFunc, n)
	var started, done sync.WaitGroup
	for i := 0; i < n; i++ {
		parent := context.Background()
		if i > 0 {
			parent = v[(i-1)/ctxFanout]
		}
		v[i], cancels[i] = context.WithCancel(parent)
	}
	for i := 0; i < n; i++ {
		if i*ctxFanout+1 < n {
			continue // has children: not a leaf
		}
		started.Add(1)
		done.Add(1)
		go func(leaf context.Context) {
			started.Done()
			<-leaf.Done()
			done.Done()
		}(v[i])
	}
	started.Wait()
	t0 := time.Now()
	cancels[0]()
	done.Wait()
	dt := time.Since(t0)
	for _, c := range cancels {
		c()
	}
	report("ctxcancel", float64(dt.Nanoseconds())/float64(n), "ns/op")
}

// groupLimit bounds the children running at once in the group workload.
const groupLimit = 1000

// group: n children through an errgroup with SetLimit(1000); the time per child, Wait included.
func benchGroup(n int) {
	t0 := time.Now()
	g, _ := errgroup.WithContext(context.Background())
	g.SetLimit(groupLimit)
	for i := 0; i < n; i++ {
		g.Go(func() error { return nil })
	}
	if err := g.Wait(); err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: group: %v\n", err)
		os.Exit(1)
	}
	dt := time.Since(t0)
	report("group", float64(dt.Nanoseconds())/float64(n), "ns/op")
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
