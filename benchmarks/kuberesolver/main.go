// Command kuberesolver-client is the benchmark's kuberesolver contender: a Go gRPC
// client that dials a kubernetes:/// target with kuberesolver v3 (Debian's
// golang-github-sercand-kuberesolver-dev) and round_robin, calls the demo service's
// unary Demo method (examples/demo/demo.proto) from -callers goroutines, and prints
// one line per call on stdout:
//
//	call <caller> <end unix ns> <latency us> <OK|grpc code> <value>
//
// It starts with "ready" once the ClientConn exists and stops after -duration or when
// stdin is closed, ending with "done". The stubs are hand-written: Demo takes an
// empty message (zero bytes) and answers Response{string value = 1}, so a raw codec
// and a ten-line decoder stand in for generated code.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sercand/kuberesolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: want *[]byte, got %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: want *[]byte, got %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// responseValue decodes demo.Response: field 1, wire type 2 (a string).
func responseValue(data []byte) (string, error) {
	value := ""
	for i := 0; i < len(data); {
		key, n := uvarint(data[i:])
		if n <= 0 {
			return "", errors.New("bad varint")
		}
		i += n
		switch key & 7 {
		case 0:
			_, n = uvarint(data[i:])
			if n <= 0 {
				return "", errors.New("bad varint")
			}
			i += n
		case 2:
			size, n := uvarint(data[i:])
			if n <= 0 || i+n+int(size) > len(data) {
				return "", errors.New("bad length")
			}
			i += n
			if key>>3 == 1 {
				value = string(data[i : i+int(size)])
			}
			i += int(size)
		default:
			return "", fmt.Errorf("unexpected wire type %d", key&7)
		}
	}
	return value, nil
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i := 0; i < len(b) && i < 10; i++ {
		x |= uint64(b[i]&0x7f) << (7 * uint(i))
		if b[i] < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

func main() {
	api := flag.String("api", "http://127.0.0.1:8001", "Kubernetes API URL (no auth: NewInsecureK8sClient)")
	target := flag.String("target", "", "kubernetes:///svc.ns:port")
	callers := flag.Int("callers", 1, "concurrent callers")
	interval := flag.Duration("interval", 10*time.Millisecond, "pause after each call, per caller")
	duration := flag.Duration("duration", 30*time.Second, "how long to call (upper bound)")
	timeout := flag.Duration("timeout", time.Second, "deadline per call")
	flag.Parse()
	if *target == "" || *callers < 1 || *callers > 64 {
		fmt.Fprintln(os.Stderr, "usage: -target kubernetes:///svc.ns:port [-callers 1..64]")
		os.Exit(2)
	}
	resolverBuilder := kuberesolver.NewBuilder(kuberesolver.NewInsecureK8sClient(*api), "kubernetes")
	conn, err := grpc.Dial(
		*target,
		grpc.WithInsecure(),
		grpc.WithResolvers(resolverBuilder),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()

	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	emit := func(line string) {
		mu.Lock()
		out.WriteString(line)
		out.WriteByte('\n')
		out.Flush()
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	go func() { // the harness stops us by closing stdin
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	emit("ready")
	var wg sync.WaitGroup
	for c := 0; c < *callers; c++ {
		wg.Add(1)
		go func(caller int) {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				callCtx, done := context.WithTimeout(ctx, *timeout)
				request, reply := []byte{}, []byte{}
				err := conn.Invoke(callCtx, "/demo.DemoService/Demo", &request, &reply)
				done()
				end := time.Now()
				if ctx.Err() != nil {
					return // cut short by the end of the run: not a failed call
				}
				code, value := "OK", "-"
				if err != nil {
					code = status.Code(err).String()
				} else if v, derr := responseValue(reply); derr != nil {
					code = "BadResponse"
				} else {
					value = v
				}
				emit(fmt.Sprintf("call %d %d %d %s %s", caller, end.UnixNano(),
					end.Sub(start).Microseconds(), code, value))
				select {
				case <-ctx.Done():
				case <-time.After(*interval):
				}
			}
		}(c)
	}
	wg.Wait()
	emit("done")
}
