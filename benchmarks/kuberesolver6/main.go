// Command kuberesolver6-client is the benchmarks' kuberesolver v6 contender: a Go gRPC
// client that dials a kubernetes: target with github.com/sercand/kuberesolver/v6 and
// round_robin, calls the demo service's unary Demo method (examples/demo/demo.proto)
// from -callers goroutines, and prints one line per call on stdout, as the v3 client
// in ../kuberesolver does:
//
//	call <caller> <end unix ns> <latency us> <OK|grpc code> <value>
//
// It starts with "ready" once the ClientConn exists and stops after -duration or when
// stdin is closed, ending with "done". With -events it also prints one line per watch
// event kuberesolver reads, as the bytes arrive (before kuberesolver acts on them):
//
//	event <unix ns> <ADDED|MODIFIED|DELETED|ERROR> <ready addresses in the object>
//
// kuberesolver v6 has no kubeconfig support: -api names the API server, and for https
// -ca-file its CA bundle and -token-file a bearer token (re-read for every request,
// so a rotated token is used). That is apiClient below, an implementation of v6's
// K8sClient interface; with http and no token, v6's own NewInsecureK8sClient is used.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sercand/kuberesolver/v6"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: want *[]byte, got %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
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

// output serialises stdout lines from every goroutine.
type output struct {
	mu  sync.Mutex
	out *bufio.Writer
}

func (o *output) emit(line string) {
	o.mu.Lock()
	o.out.WriteString(line)
	o.out.WriteByte('\n')
	o.out.Flush()
	o.mu.Unlock()
}

// apiClient is kuberesolver v6's K8sClient over https with a CA bundle and a bearer
// token read from a file on every request.
type apiClient struct {
	host      string
	tokenFile string
	http      *http.Client
	events    *output // non-nil: report watch events
}

func newAPIClient(host, caFile, tokenFile string, events *output) (*apiClient, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
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
	// No client timeout: a watch is a long GET (kuberesolver's in-cluster client does the same).
	return &apiClient{host: host, tokenFile: tokenFile, http: &http.Client{Transport: transport}, events: events}, nil
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

func (c *apiClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err == nil && c.events != nil && resp.StatusCode == http.StatusOK && strings.Contains(req.URL.Path, "/watch/") {
		resp.Body = &eventTap{body: resp.Body, out: c.events}
	}
	return resp, err
}

func (c *apiClient) Host() string { return c.host }

// eventTap passes a watch stream through unchanged and reports each complete event
// line (the API server writes one JSON object per line) when its bytes arrive.
type eventTap struct {
	body    io.ReadCloser
	out     *output
	pending []byte
}

func (t *eventTap) Read(p []byte) (int, error) {
	n, err := t.body.Read(p)
	if n > 0 {
		now := time.Now().UnixNano()
		t.pending = append(t.pending, p[:n]...)
		for {
			end := bytes.IndexByte(t.pending, '\n')
			if end < 0 {
				break
			}
			t.report(now, t.pending[:end])
			t.pending = t.pending[end+1:]
		}
	}
	return n, err
}

func (t *eventTap) report(now int64, line []byte) {
	var event struct {
		Type   string `json:"type"`
		Object struct {
			Endpoints []struct {
				Addresses  []string `json:"addresses"`
				Conditions struct {
					Ready *bool `json:"ready"`
				} `json:"conditions"`
			} `json:"endpoints"`
		} `json:"object"`
	}
	if json.Unmarshal(line, &event) != nil {
		return
	}
	ready := 0
	for _, e := range event.Object.Endpoints {
		if e.Conditions.Ready != nil && *e.Conditions.Ready {
			ready += len(e.Addresses)
		}
	}
	t.out.emit(fmt.Sprintf("event %d %s %d", now, event.Type, ready))
}

func (t *eventTap) Close() error { return t.body.Close() }

func main() {
	api := flag.String("api", "http://127.0.0.1:8001", "Kubernetes API URL")
	caFile := flag.String("ca-file", "", "CA bundle of an https API server")
	tokenFile := flag.String("token-file", "", "file holding a bearer token")
	events := flag.Bool("events", false, "print a line per watch event read")
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
	out := &output{out: bufio.NewWriter(os.Stdout)}
	var client kuberesolver.K8sClient
	if strings.HasPrefix(*api, "http://") && *tokenFile == "" && !*events {
		client = kuberesolver.NewInsecureK8sClient(*api)
	} else {
		var tap *output
		if *events {
			tap = out
		}
		c, err := newAPIClient(*api, *caFile, *tokenFile, tap)
		if err != nil {
			fmt.Fprintln(os.Stderr, "api client:", err)
			os.Exit(1)
		}
		client = c
	}
	conn, err := grpc.NewClient(
		*target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(kuberesolver.NewBuilder(client, "kubernetes")),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	defer conn.Close()
	conn.Connect() // leave idle mode now, as grpc.Dial did: the resolver starts watching

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	go func() { // the harness stops us by closing stdin
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	out.emit("ready")
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
				out.emit(fmt.Sprintf("call %d %d %d %s %s", caller, end.UnixNano(),
					end.Sub(start).Microseconds(), code, value))
				select {
				case <-ctx.Done():
				case <-time.After(*interval):
				}
			}
		}(c)
	}
	wg.Wait()
	out.emit("done")
}
