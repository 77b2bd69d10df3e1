// SPDX-License-Identifier: MIT

// Command tetherbench-go is the Go twin of bench/tether-bench.c: the same workloads, the same
// program shape and the same output (`name value unit` lines), so that scripts/bench can put the
// two side by side. Each workload here mirrors its C case line for line; change both together.
//
// Usage: tetherbench-go WORKLOAD [COUNT] [--out DIR]
//
// --out DIR is where the dump workload writes its profiles (default: a temporary directory,
// removed afterwards).
//
// The runtime runs with its defaults (GOMAXPROCS = all CPUs) and cold: nothing is warmed up
// before the timed part, and RSS is read from before the first spawn.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	{"pingpong-trace", 1000000, func(n int) { traced(benchPingpong, n) }},
	{"spawn-trace", 1000000, func(n int) { traced(benchSpawn, n) }},
	{"buffered", 10000000, benchBuffered},
	{"select", 4000000, benchSelect},
	{"timers", 100000, benchTimers},
	{"mutex", 1000000, benchMutex},
	{"ctxcancel", 100000, benchCtxcancel},
	{"group", 1000000, benchGroup},
	{"dump", 1000000, benchDump},
	{"leakscan", 1000000, benchLeakscan},
	{"echo", 500000, benchEcho},
}

// outDir is --out DIR (the dump workload's output directory), or "".
var outDir string

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

// tracing is set while a -trace twin runs: the results are named with "-trace" appended.
var tracing bool

// traced runs a workload with runtime/trace on, to io.Discard (the C twin streams its binary
// trace to /dev/null).
func traced(run func(n int), n int) {
	if err := trace.Start(io.Discard); err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: trace.Start: %v\n", err)
		os.Exit(1)
	}
	tracing = true
	run(n)
	trace.Stop()
	tracing = false
}

// traceName is name, with "-trace" while tracing.
func traceName(name string) string {
	if tracing {
		return name + "-trace"
	}
	return name
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
	report(traceName("spawn"), float64(dt.Nanoseconds())/float64(n), "ns/op")
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
	report(traceName("pingpong"), float64(dt.Nanoseconds())/float64(n), "ns/op")
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

// echoConns clients talk to a TCP echo server on loopback with echoMsg-byte messages.
const (
	echoConns = 100
	echoMsg   = 64
)

// echo: n round trips in all over echoConns connections at once; the time from the first dial to
// the last reply, per round trip (1e9 / this = requests per second).
func benchEcho(n int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: listen: %v\n", err)
		os.Exit(1)
	}
	per := n / echoConns
	if per < 1 {
		per = 1
	}
	var wg sync.WaitGroup
	var checked int64
	var failed atomic.Value
	wg.Add(echoConns)
	t0 := time.Now()
	go func() {
		for i := 0; i < echoConns; i++ {
			c, err := l.Accept()
			if err != nil {
				failed.Store(err)
				return
			}
			go func(c net.Conn) {
				buf := make([]byte, echoMsg)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						break
					}
					if _, err := c.Write(buf); err != nil {
						break
					}
				}
				c.Close()
			}(c)
		}
	}()
	for i := 0; i < echoConns; i++ {
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				failed.Store(err)
				return
			}
			out := make([]byte, echoMsg)
			in := make([]byte, echoMsg)
			for j := range out {
				out[j] = 'e'
			}
			for k := 0; k < per; k++ {
				out[0] = byte(k)
				if _, err := c.Write(out); err != nil {
					failed.Store(err)
					break
				}
				if _, err := io.ReadFull(c, in); err != nil {
					failed.Store(err)
					break
				}
				if in[0] != byte(k) {
					failed.Store(fmt.Errorf("reply out of order"))
					break
				}
			}
			atomic.AddInt64(&checked, int64(per))
			c.Close()
		}()
	}
	wg.Wait()
	dt := time.Since(t0)
	l.Close()
	if e := failed.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: echo: %v\n", e)
		os.Exit(1)
	}
	if checked != int64(per*echoConns) {
		fmt.Fprintf(os.Stderr, "tetherbench-go: echo: %d round trips, want %d\n", checked, per*echoConns)
		os.Exit(1)
	}
	report("echo", float64(dt.Nanoseconds())/float64(per*echoConns), "ns/req")
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

// The dump workload's four stacks, which the C twin mirrors frame for frame: a channel receive
// at depth 1, a mutex lock at depth 3, a select at depth 2 and a sleep at depth 5 (depth: the
// workload's own frames, the goroutine's entry function included). Each frame is a function of
// its own that the compiler may not inline, so the profiles show exactly these stacks; each
// goroutine signals started just before it blocks.

//go:noinline
func dumpRecv(started *sync.WaitGroup, ch chan int) {
	started.Done()
	<-ch
}

//go:noinline
func dumpLock1(started *sync.WaitGroup, mu *sync.Mutex) { dumpLock2(started, mu) }

//go:noinline
func dumpLock2(started *sync.WaitGroup, mu *sync.Mutex) { dumpLock3(started, mu) }

//go:noinline
func dumpLock3(started *sync.WaitGroup, mu *sync.Mutex) {
	started.Done()
	mu.Lock()
}

//go:noinline
func dumpSelect1(started *sync.WaitGroup, a, b chan int) { dumpSelect2(started, a, b) }

//go:noinline
func dumpSelect2(started *sync.WaitGroup, a, b chan int) {
	started.Done()
	select {
	case <-a:
	case b <- 1:
	}
}

//go:noinline
func dumpSleep1(started *sync.WaitGroup) { dumpSleep2(started) }

//go:noinline
func dumpSleep2(started *sync.WaitGroup) { dumpSleep3(started) }

//go:noinline
func dumpSleep3(started *sync.WaitGroup) { dumpSleep4(started) }

//go:noinline
func dumpSleep4(started *sync.WaitGroup) { dumpSleep5(started) }

//go:noinline
func dumpSleep5(started *sync.WaitGroup) {
	started.Done()
	time.Sleep(24 * time.Hour)
}

// dumpSettle is how long the dump workload waits after the last goroutine has signalled: each
// signals just before it blocks, so only the few running at that moment are not yet parked.
const dumpSettle = 100 * time.Millisecond

// dumpWrite writes the goroutine profile at the given debug level to dir/name and returns the
// time it took, file creation and close included.
func dumpWrite(dir, name string, debug int) time.Duration {
	t0 := time.Now()
	f, err := os.Create(filepath.Join(dir, name))
	if err == nil {
		err = pprof.Lookup("goroutine").WriteTo(f, debug)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	dt := time.Since(t0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: dump: %s: %v\n", name, err)
		os.Exit(1)
	}
	return dt
}

// dumpCheck reads back the text dumps and says on stderr what a reader of the timings should
// know: whether the debug=1 profile shows exactly the four stacks (every goroutine parked where
// it should be, plus the one writing), and whether debug=2 holds every goroutine (Go stops at a
// 64 MiB buffer).
func dumpCheck(dir string, n int) {
	b, err := os.ReadFile(filepath.Join(dir, "goroutine-debug1.txt"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: dump: %v\n", err)
		os.Exit(1)
	}
	groups, parked := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var count int
		var rest string
		if k, _ := fmt.Sscanf(sc.Text(), "%d @%s", &count, &rest); k == 2 {
			groups++
			if count > 1 || n < 8 {
				parked += count
			}
		}
	}
	if groups != 5 || parked < n {
		fmt.Fprintf(os.Stderr, "tetherbench-go: dump: debug=1 shows %d stacks (want 4 and the writer's), %d goroutines in them (want %d): not all had parked\n", groups, parked, n)
	}
	f, err := os.Open(filepath.Join(dir, "goroutine-debug2.txt"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: dump: %v\n", err)
		os.Exit(1)
	}
	defer f.Close()
	st, _ := f.Stat()
	seen := 0
	sc = bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "goroutine ") {
			seen++
		}
	}
	if seen < n+1 {
		fmt.Fprintf(os.Stderr, "tetherbench-go: dump: debug=2 is truncated: %d of %d goroutines in %.1f MiB\n", seen, n+1, float64(st.Size())/(1<<20))
	}
}

// dump: n goroutines parked in the four stacks above (i % 4 picks the shape, so each gets n/4,
// the remainder to the first ones); once all have parked, the goroutine profile is written as
// DIR/goroutine.pb.gz (protobuf), DIR/goroutine-debug1.txt (debug=1) and
// DIR/goroutine-debug2.txt (debug=2, Go's traceback text), each timed. The process then exits
// with them still parked (the sleepers could not be woken anyway).
func benchDump(n int) {
	dir := outDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "tetherbench-dump-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "tetherbench-go: dump: %v\n", err)
			os.Exit(1)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: dump: %v\n", err)
		os.Exit(1)
	}
	var started sync.WaitGroup
	ch := make(chan int) // never sent on
	var mu sync.Mutex    // held by this goroutine throughout
	mu.Lock()
	a, b := make(chan int), make(chan int) // neither case ever ready
	started.Add(n)
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			go dumpRecv(&started, ch)
		case 1:
			go dumpLock1(&started, &mu)
		case 2:
			go dumpSelect1(&started, a, b)
		case 3:
			go dumpSleep1(&started)
		}
	}
	started.Wait()
	time.Sleep(dumpSettle)
	report("dump-pprof", float64(dumpWrite(dir, "goroutine.pb.gz", 0).Nanoseconds())/1e6, "ms")
	report("dump-debug1", float64(dumpWrite(dir, "goroutine-debug1.txt", 1).Nanoseconds())/1e6, "ms")
	report("dump-debug2", float64(dumpWrite(dir, "goroutine-debug2.txt", 2).Nanoseconds())/1e6, "ms")
	dumpCheck(dir, n)
}

// leakscan: n goroutines in the C twin's four shapes: a quarter receive on a channel nobody else
// can reach (leaked), the rest wait on a channel, a mutex, or a select with a context's Done that
// main still holds. Go 1.19 has no leak detector; Go 1.26 finds such leaks during a garbage
// collection (its goroutineleak profile). So "leakscan" times runtime.GC() over these goroutines,
// the pass that detection rides on, and "leakscan-report" a GC followed by the goroutine profile
// at debug=1 (the listing of where they wait).
func benchLeakscan(n int) {
	var parked sync.WaitGroup
	live := make(chan int)
	var mu sync.Mutex
	mu.Lock()
	ctx, cancel := context.WithCancel(context.Background())
	parked.Add(n)
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			go func() {
				own := make(chan int)
				parked.Done()
				<-own
			}()
		case 1:
			go func() {
				parked.Done()
				<-live
			}()
		case 2:
			go func() {
				parked.Done()
				mu.Lock()
				mu.Unlock()
			}()
		case 3:
			go func() {
				parked.Done()
				select {
				case <-live:
				case <-ctx.Done():
				}
			}()
		}
	}
	parked.Wait()
	time.Sleep(10 * time.Millisecond)
	t0 := time.Now()
	runtime.GC()
	report("leakscan", float64(time.Since(t0).Nanoseconds())/1e6, "ms")
	t0 = time.Now()
	runtime.GC()
	if err := pprof.Lookup("goroutine").WriteTo(io.Discard, 1); err != nil {
		fmt.Fprintf(os.Stderr, "tetherbench-go: leakscan: %v\n", err)
		os.Exit(1)
	}
	report("leakscan-report", float64(time.Since(t0).Nanoseconds())/1e6, "ms")
	close(live)
	cancel()
	mu.Unlock()
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: tetherbench-go WORKLOAD [COUNT] [--out DIR]\nworkloads:")
	for _, w := range workloads {
		fmt.Fprintf(os.Stderr, " %s", w.name)
	}
	fmt.Fprintln(os.Stderr)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	count := ""
	for i := 2; i < len(os.Args); i++ {
		switch arg := os.Args[i]; {
		case arg == "--out" && i+1 < len(os.Args):
			outDir = os.Args[i+1]
			i++
		case strings.HasPrefix(arg, "--out="):
			outDir = strings.TrimPrefix(arg, "--out=")
		case count == "" && !strings.HasPrefix(arg, "-"):
			count = arg
		default:
			usage()
		}
	}
	for _, w := range workloads {
		if w.name != os.Args[1] {
			continue
		}
		n := w.count
		if count != "" {
			v, err := strconv.Atoi(count)
			if err != nil || v <= 0 {
				fmt.Fprintf(os.Stderr, "tetherbench-go: bad COUNT %q\n", count)
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
