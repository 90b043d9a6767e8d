package main

// The password prompt on a terminal, through a real pseudo-terminal: Linux
// only, for the ioctls that open one.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/syncerhq/syncer/sync/sandbox"
)

// openPTY returns a pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlocking the pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("finding the pty's number: %v", e)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

func echoOn(t *testing.T, tty *os.File) bool {
	t.Helper()
	var tio syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); e != 0 {
		t.Fatalf("reading the terminal's modes: %v", e)
	}
	return tio.Lflag&syscall.ECHO != 0
}

func TestConnectPromptsWithoutEchoOnATerminal(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	master, slave := openPTY(t)
	if !echoOn(t, slave) {
		t.Fatal("a new terminal should echo (or this test cannot see the prompt turn it off)")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "connect", "everreal", "-name", "er", "-url", w.sb.EverRealURL, "-username", erEmail)
	cmd.Env = w.environ()
	cmd.Stdin = slave
	var mu sync.Mutex
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &lockedWriter{mu: &mu, w: &stdout}
	cmd.Stderr = &lockedWriter{mu: &mu, w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// What the terminal shows the person: everything written to it,
	// including any echo of what they type.
	var screen bytes.Buffer
	screenDone := make(chan struct{})
	go func() {
		io.Copy(&screen, master) // ends with EIO once the slave is closed
		close(screenDone)
	}()

	// Type only once the prompt is up and echo is off.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		prompted := strings.Contains(stderr.String(), "EverReal password for "+erEmail)
		mu.Unlock()
		if prompted && !echoOn(t, slave) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("no prompt with echo off (prompted: %v):\nstdout %s\nstderr %s", prompted, stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := master.Write([]byte(canaryPassword + "\r")); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	mu.Lock()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	mu.Unlock()
	if err != nil {
		t.Fatalf("connect on a terminal: %v\n%s", err, res)
	}
	if !strings.Contains(res.stdout, "everreal er: connected") {
		t.Fatalf("connect should succeed:\n%s", res)
	}
	if !echoOn(t, slave) {
		t.Fatal("the terminal was left without echo")
	}
	slave.Close()
	select {
	case <-screenDone:
	case <-time.After(10 * time.Second):
		master.Close()
		<-screenDone
	}
	w.noSecrets(res.stdout+res.stderr+screen.String(), canaryPassword)
}
