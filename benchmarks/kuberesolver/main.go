// Command kuberesolver-client is the benchmark's kuberesolver contender: a Go gRPC
// client that dials a kubernetes:/// target with kuberesolver v3 (Debian's
// golang-github-sercand-kuberesolver-dev) and round_robin, calls the demo service's
// unary Demo method (examples/demo/demo.proto) from -callers goroutines, and prints
// one line per call on stdout:
//
//	call <caller> <end unix ns> <latency us> <OK|grpc code> <value>
//
// It starts with "ready" once the ClientConn exists and stops after -duration or when
// stdin is closed, ending with "done". For an https API server (a real kube-apiserver),
// -ca-file names its CA bundle and -token-file a file holding a bearer token (apiClient,
// an implementation of kuberesolver's K8sClient interface); without them the client is
// kuberesolver's NewInsecureK8sClient (plain http, no token). The stubs are hand-written: Demo takes an
// empty message (zero bytes) and answers Response{string value = 1}, so a raw codec
// and a ten-line decoder stand in for generated code.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
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

// apiClient is kuberesolver's K8sClient over https with a CA bundle and a bearer token
// read from a file on every request.
type apiClient struct {
	host      string
	tokenFile string
	http      *http.Client
}

func newAPIClient(host, caFile, tokenFile string) (*apiClient, error) {
	transport := &http.Transport{}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caFile)
		}
		transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return &apiClient{host: host, tokenFile: tokenFile, http: &http.Client{Transport: transport}}, nil
}

func (c *apiClient) GetRequest(url string) (*http.Request, error) {
	if !strings.HasPrefix(url, c.host) {
		url = fmt.Sprintf("%s/%s", c.host, url)
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	if c.tokenFile != "" {
		token, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	return req, nil
}

func (c *apiClient) Do(req *http.Request) (*http.Response, error) { return c.http.Do(req) }

func (c *apiClient) Host() string { return c.host }

func main() {
	api := flag.String("api", "http://127.0.0.1:8001", "Kubernetes API URL")
	caFile := flag.String("ca-file", "", "CA bundle of an https API server")
	tokenFile := flag.String("token-file", "", "file holding a bearer token")
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
	var client kuberesolver.K8sClient = kuberesolver.NewInsecureK8sClient(*api)
	if *caFile != "" || *tokenFile != "" {
		c, err := newAPIClient(*api, *caFile, *tokenFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "api client:", err)
			os.Exit(1)
		}
		client = c
	}
	resolverBuilder := kuberesolver.NewBuilder(client, "kubernetes")
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
