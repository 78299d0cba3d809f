// Command go_http is the Go peer of cio's HTTP benchmark.
//
// Usage: go_http ROOT PORT
//
// net/http as people run it: http.FileServer over ROOT for the files
// (which sends them with sendfile(2) through io.Copy's ReadFrom), and a
// handler for /hello answering "Hello, world!\n", the dynamic page
// examples/http_server has. Keep-alive is on by default. Run under
// GOMAXPROCS=1, as the single-threaded servers it is compared with.
// Listens on 127.0.0.1; prints only errors; runs until killed.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go_http ROOT PORT")
		os.Exit(2)
	}
	hello := []byte("Hello, world!\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(hello)
	})
	mux.Handle("/", http.FileServer(http.Dir(os.Args[1])))
	err := http.ListenAndServe("127.0.0.1:"+os.Args[2], mux)
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
