// Command echo is a test workload image of the test node of internal/testenv: an HTTP server on
// :8080 answering every request with "ferry-echo <hostname>".
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ferry-echo %s\n", host)
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
