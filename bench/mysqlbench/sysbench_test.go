package main

import (
	"os"
	"testing"
)

// TestParseReport reads a report sysbench 1.0.20 printed for a real
// oltp_write_only run with --histogram=on.
func TestParseReport(t *testing.T) {
	out, err := os.ReadFile("testdata/oltp_write_only.txt")
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.transactions != 866 || r.tps != 342.46 || r.errors != 8 {
		t.Fatalf("transactions %d tps %v errors %d, want 866 342.46 8", r.transactions, r.tps, r.errors)
	}
	// sysbench's own "95th percentile" line says 7.84, from the same
	// histogram, rounded to two places.
	if r.p95 < 7.835 || r.p95 > 7.845 {
		t.Errorf("p95 %v, want 7.84 as sysbench reports", r.p95)
	}
	if r.p50 <= 0.65 || r.p50 >= r.p95 {
		t.Errorf("p50 %v outside (min 0.65, p95 %v)", r.p50, r.p95)
	}
}

func TestParseReportRefusesTruncatedOutput(t *testing.T) {
	if _, err := parseReport([]byte("FATAL: mysql_drv_query() returned error 1290 (TRYAGAIN no leader)\n")); err == nil {
		t.Fatal("a report without transactions was accepted")
	}
	if _, err := parseReport([]byte("    transactions:                        866    (342.46 per sec.)\n")); err == nil {
		t.Fatal("a report without a histogram was accepted")
	}
}
