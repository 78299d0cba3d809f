// Command go_tasks holds the Go peer benchmarks for cio's task and queue
// benchmarks (issues "coroutines" and "sync").
//
// Usage: go_tasks BENCH [COUNT]
//
//	spawn             COUNT goroutines started and waited for (ns/task)
//	switch            two goroutines hand a value back and forth COUNT times (ns/op)
//	sleepers          COUNT goroutines each time.Sleep(1 s) at once (bytes/task, wall s)
//	queue_pingpong    two goroutines, two channels of capacity 1, COUNT hand-offs (ns/op)
//	queue_throughput  4 producers / 4 consumers, one channel of capacity 1024 (items/s)
//
// GOMAXPROCS is left at its default (the number of CPUs, 2 on the bench
// machine), so Go may run goroutines in parallel on both cores, unlike the
// single-threaded asyncio and cio loops.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var defaults = map[string]int{
	"spawn":            1000000,
	"switch":           1000000,
	"sleepers":         100000,
	"queue_pingpong":   1000000,
	"queue_throughput": 1000000,
}

func report(name string, value float64, unit string, prec int) {
	fmt.Printf("bench %s go %.*f %s\n", name, prec, value, unit)
}

// peakRSSKiB returns the peak resident set size in KiB (Linux ru_maxrss).
func peakRSSKiB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Maxrss
}

// spawn: start n trivial goroutines, all counted by one WaitGroup.
func spawn(n int) {
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	el := time.Since(t0)
	report("spawn", float64(el.Nanoseconds())/float64(n), "ns/op", 1)
}

// switchBench: unbuffered-channel ping-pong; n hand-offs in total
// (A->B and B->A each count as one). An unbuffered send is a rendezvous,
// the direct analogue of handing a value to a waiting task.
func switchBench(n int) {
	rounds := n / 2
	toB, toA := make(chan int), make(chan int)
	done := make(chan int)
	t0 := time.Now()
	go func() { // A
		v := 0
		for i := 0; i < rounds; i++ {
			toB <- v
			v = <-toA
		}
		done <- v
	}()
	go func() { // B
		for i := 0; i < rounds; i++ {
			v := <-toB
			toA <- v + 1
		}
	}()
	v := <-done
	el := time.Since(t0)
	if v != rounds {
		panic("switch: wrong final value")
	}
	report("switch", float64(el.Nanoseconds())/float64(2*rounds), "ns/op", 1)
}

// sleepers: n goroutines each sleeping 1 s at the same time.
// bytes/task = (peak RSS after - peak RSS before spawning) / n.
func sleepers(n int) {
	var wg sync.WaitGroup
	before := peakRSSKiB()
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			time.Sleep(time.Second)
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	after := peakRSSKiB()
	report("sleepers", float64(after-before)*1024/float64(n), "bytes/task", 0)
	report("sleepers_wall", el.Seconds(), "s", 3)
}

// queuePingpong: like switch but through two channels of capacity 1
// (the counterpart of two queues of maxsize 1); n hand-offs in total.
func queuePingpong(n int) {
	rounds := n / 2
	ab, ba := make(chan int, 1), make(chan int, 1)
	done := make(chan int)
	t0 := time.Now()
	go func() {
		v := 0
		for i := 0; i < rounds; i++ {
			ab <- v
			v = <-ba
		}
		done <- v
	}()
	go func() {
		for i := 0; i < rounds; i++ {
			v := <-ab
			ba <- v + 1
		}
	}()
	v := <-done
	el := time.Since(t0)
	if v != rounds {
		panic("queue_pingpong: wrong final value")
	}
	report("queue_pingpong", float64(el.Nanoseconds())/float64(2*rounds), "ns/op", 1)
}

// queueThroughput: 4 producers each send n/4 items into one channel of
// capacity 1024; 4 consumers each receive exactly n/4. Reports items/s.
func queueThroughput(n int) {
	const workers = 4
	per := n / workers
	ch := make(chan int, 1024)
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(2 * workers)
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < per; i++ {
				ch <- i
			}
			wg.Done()
		}()
		go func() {
			for i := 0; i < per; i++ {
				<-ch
			}
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	report("queue_throughput", float64(per*workers)/el.Seconds(), "items/s", 0)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go_tasks BENCH [COUNT]")
		os.Exit(2)
	}
	name := os.Args[1]
	n, ok := defaults[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown bench %q\n", name)
		os.Exit(2)
	}
	if len(os.Args) > 2 {
		v, err := strconv.Atoi(os.Args[2])
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "bad count %q\n", os.Args[2])
			os.Exit(2)
		}
		n = v
	}
	switch name {
	case "spawn":
		spawn(n)
	case "switch":
		switchBench(n)
	case "sleepers":
		sleepers(n)
	case "queue_pingpong":
		queuePingpong(n)
	case "queue_throughput":
		queueThroughput(n)
	}
}
