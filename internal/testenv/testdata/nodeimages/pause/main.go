// Command pause is the sandbox ("pause") image of the test node of internal/testenv: it holds a
// Pod's namespaces open and does nothing until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
