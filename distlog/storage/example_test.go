package storage_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
)

func ExampleLog() {
	dir, err := os.MkdirTemp("", "storage-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := storage.NewLog(dir, storage.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	for _, v := range []string{"first", "second"} {
		if _, err := l.Append(&storage.Record{Value: []byte(v)}); err != nil {
			log.Fatal(err)
		}
	}
	rec, err := l.Read(1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d: %s\n", rec.Offset, rec.Value)

	_, err = l.Read(2)
	var outOfRange api.ErrOffsetOutOfRange
	fmt.Println(errors.As(err, &outOfRange), outOfRange.Offset)
	// Output:
	// 1: second
	// true 2
}

// A consumer that reaches the end of the log waits on Appended, taken
// before the read that found nothing: no polling, and no append can slip
// in between.
func ExampleLog_Appended() {
	dir, err := os.MkdirTemp("", "storage-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := storage.NewLog(dir, storage.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	go func() {
		if _, err := l.Append(&storage.Record{Value: []byte("late")}); err != nil {
			log.Print(err)
		}
	}()
	for {
		changed := l.Appended()
		rec, err := l.Read(0)
		if err == nil {
			fmt.Printf("%s\n", rec.Value)
			return
		}
		if !errors.As(err, new(api.ErrOffsetOutOfRange)) {
			log.Fatal(err)
		}
		<-changed // in real code, also select on ctx.Done()
	}
	// Output: late
}

// A consumer that is behind reads in batches: up to 2 records, or 10 bytes
// of values, per call; the next call starts after the last record.
func ExampleLog_ReadBatch() {
	dir, err := os.MkdirTemp("", "storage-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := storage.NewLog(dir, storage.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	for _, v := range []string{"a", "b", "c", "dddddddddddd", "e"} {
		if _, err := l.Append(&storage.Record{Value: []byte(v)}); err != nil {
			log.Fatal(err)
		}
	}

	for offset := uint64(0); offset < l.NextOffset(); {
		batch, err := l.ReadBatch(offset, 2, 10)
		if err != nil {
			log.Fatal(err)
		}
		var line []string
		for _, rec := range batch {
			line = append(line, fmt.Sprintf("%d:%s", rec.Offset, rec.Value))
		}
		fmt.Println(strings.Join(line, " "))
		offset += uint64(len(batch))
	}
	// Output:
	// 0:a 1:b
	// 2:c
	// 3:dddddddddddd
	// 4:e
}
