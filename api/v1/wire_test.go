package api_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	api "github.com/proglog/proglog/api/v1"
)

// updateWire appends the wire contract's new lines to testdata/wire.golden.
// It never removes a line: a line that disappeared is a break of the wire
// contract, which the test reports whatever the flag says.
var updateWire = flag.Bool("update-wire", false, "append new fields, messages and methods of log.proto to testdata/wire.golden")

const wireGolden = "testdata/wire.golden"

// TestWireContract pins log.proto's wire contract: every field's number,
// name, cardinality and type, every reserved number, and every method's
// request and response types. The golden list may only grow: a line missing
// from the compiled descriptors means a field was renumbered, retyped,
// renamed or removed, which breaks clients built from an earlier proto (the
// book's among them). After adding to log.proto, run
//
//	go test ./api/v1 -run TestWireContract -update-wire
//
// and commit testdata/wire.golden.
func TestWireContract(t *testing.T) {
	got := wireLines(api.File_api_v1_log_proto)
	data, err := os.ReadFile(wireGolden)
	require.NoErrorf(t, err, "read %s", wireGolden)
	var golden []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			golden = append(golden, line)
		}
	}
	for _, line := range golden {
		if !slices.Contains(got, line) && !reservedNow(got, line) {
			t.Errorf("log.proto no longer has %q: the proto may only grow compatibly (a removed field's number and name must be reserved)", line)
		}
	}
	var added []string
	for _, line := range got {
		if !slices.Contains(golden, line) {
			added = append(added, line)
		}
	}
	if len(added) == 0 {
		return
	}
	if !*updateWire {
		t.Fatalf("log.proto has lines %s does not pin yet; check they are compatible additions and run go test ./api/v1 -run TestWireContract -update-wire:\n%s",
			wireGolden, strings.Join(added, "\n"))
	}
	if t.Failed() {
		t.Fatalf("not updating %s: the proto broke the contract above", wireGolden)
	}
	f, err := os.OpenFile(filepath.Clean(wireGolden), os.O_APPEND|os.O_WRONLY, 0)
	require.NoErrorf(t, err, "open %s", wireGolden)
	defer f.Close()
	_, err = f.WriteString(strings.Join(added, "\n") + "\n")
	require.NoErrorf(t, err, "append to %s", wireGolden)
}

// reservedNow reports whether line is a field whose number and name the
// current descriptors (lines got) reserve: the one compatible way to remove a
// field.
func reservedNow(got []string, line string) bool {
	var fullName, kind string
	var number int
	if _, err := fmt.Sscanf(line, "field %s = %d %s", &fullName, &number, &kind); err != nil {
		return false
	}
	dot := strings.LastIndex(fullName, ".")
	if dot < 0 {
		return false
	}
	message, name := fullName[:dot], fullName[dot+1:]
	nameReserved := slices.Contains(got, fmt.Sprintf("reserved %s %q", message, name))
	numberReserved := false
	for _, l := range got {
		var m string
		var lo, hi int
		if _, err := fmt.Sscanf(l, "reserved %s %d-%d", &m, &lo, &hi); err == nil && m == message && lo <= number && number <= hi {
			numberReserved = true
		}
	}
	return nameReserved && numberReserved
}

// TestBookWireNumbers checks the messages of the seed book's final log.proto
// field by field, so that the book's generated clients keep working: the
// golden list could in principle have been started from a proto that
// already differed from the book.
func TestBookWireNumbers(t *testing.T) {
	book := []string{
		"field log.v1.Record.value = 1 optional bytes",
		"field log.v1.Record.offset = 2 optional uint64",
		"field log.v1.Record.term = 3 optional uint64",
		"field log.v1.Record.type = 4 optional uint32",
		"field log.v1.ProduceRequest.record = 1 optional message log.v1.Record",
		"field log.v1.ProduceResponse.offset = 1 optional uint64",
		"field log.v1.ConsumeRequest.offset = 1 optional uint64",
		"field log.v1.ConsumeResponse.record = 2 optional message log.v1.Record",
		"field log.v1.GetServersResponse.servers = 1 repeated message log.v1.Server",
		"field log.v1.Server.id = 1 optional string",
		"field log.v1.Server.rpc_addr = 2 optional string",
		"field log.v1.Server.is_leader = 3 optional bool",
		"message log.v1.GetServersRequest",
		"rpc log.v1.Log.Produce(log.v1.ProduceRequest) returns (log.v1.ProduceResponse)",
		"rpc log.v1.Log.Consume(log.v1.ConsumeRequest) returns (log.v1.ConsumeResponse)",
		"rpc log.v1.Log.ConsumeStream(log.v1.ConsumeRequest) returns (stream log.v1.ConsumeResponse)",
		"rpc log.v1.Log.ProduceStream(stream log.v1.ProduceRequest) returns (stream log.v1.ProduceResponse)",
		"rpc log.v1.Log.GetServers(log.v1.GetServersRequest) returns (log.v1.GetServersResponse)",
	}
	got := wireLines(api.File_api_v1_log_proto)
	for _, line := range book {
		if !slices.Contains(got, line) {
			t.Errorf("log.proto lacks the book's %q", line)
		}
	}
}

// wireLines describes fd's wire contract, one sorted line per message,
// field, reserved range and method.
func wireLines(fd protoreflect.FileDescriptor) []string {
	var lines []string
	var walk func(protoreflect.MessageDescriptors)
	walk = func(msgs protoreflect.MessageDescriptors) {
		for i := 0; i < msgs.Len(); i++ {
			m := msgs.Get(i)
			lines = append(lines, "message "+string(m.FullName()))
			fields := m.Fields()
			for j := 0; j < fields.Len(); j++ {
				f := fields.Get(j)
				kind := f.Kind().String()
				switch f.Kind() {
				case protoreflect.MessageKind, protoreflect.GroupKind:
					kind += " " + string(f.Message().FullName())
				case protoreflect.EnumKind:
					kind += " " + string(f.Enum().FullName())
				}
				lines = append(lines, fmt.Sprintf("field %s = %d %s %s", f.FullName(), f.Number(), f.Cardinality(), kind))
			}
			ranges := m.ReservedRanges()
			for j := 0; j < ranges.Len(); j++ {
				r := ranges.Get(j) // [start, end)
				lines = append(lines, fmt.Sprintf("reserved %s %d-%d", m.FullName(), r[0], r[1]-1))
			}
			names := m.ReservedNames()
			for j := 0; j < names.Len(); j++ {
				lines = append(lines, fmt.Sprintf("reserved %s %q", m.FullName(), names.Get(j)))
			}
			walk(m.Messages())
		}
	}
	walk(fd.Messages())
	services := fd.Services()
	for i := 0; i < services.Len(); i++ {
		methods := services.Get(i).Methods()
		for j := 0; j < methods.Len(); j++ {
			m := methods.Get(j)
			in, out := string(m.Input().FullName()), string(m.Output().FullName())
			if m.IsStreamingClient() {
				in = "stream " + in
			}
			if m.IsStreamingServer() {
				out = "stream " + out
			}
			lines = append(lines, fmt.Sprintf("rpc %s(%s) returns (%s)", m.FullName(), in, out))
		}
	}
	slices.Sort(lines)
	return lines
}
