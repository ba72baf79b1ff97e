package main

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"

	"github.com/google/uuid"
)

// keySum checks that the rows in PostgreSQL are exactly the acknowledged
// writes without shipping every key back from the load processes: each
// load process adds up the first 60 bits of the UUIDs it got a 202 for,
// and PostgreSQL adds up the same bits of the guids in table ingest
// (sumSQL). With random UUIDs, a lost write and an extra row that happen
// to cancel out are vanishingly unlikely, and the count is compared too.
type keySum struct{ hi, lo uint64 }

// sumSQL computes the same sum, as a decimal, over table ingest.
const sumSQL = `SELECT count(*), coalesce(sum(('x' || substr(replace(guid::text, '-', ''), 1, 15))::bit(60)::bigint), 0)::text FROM ingest`

// guidBits is what sumSQL adds up for one guid: its first 15 hex digits.
func guidBits(g uuid.UUID) uint64 { return binary.BigEndian.Uint64(g[:8]) >> 4 }

func (s *keySum) add(v uint64) {
	var carry uint64
	s.lo, carry = bits.Add64(s.lo, v, 0)
	s.hi += carry
}

func (s *keySum) merge(o keySum) {
	var carry uint64
	s.lo, carry = bits.Add64(s.lo, o.lo, 0)
	s.hi += o.hi + carry
}

func (s keySum) String() string {
	b := new(big.Int).SetUint64(s.hi)
	b.Lsh(b, 64)
	b.Add(b, new(big.Int).SetUint64(s.lo))
	return b.String()
}

func parseKeySum(dec string) (keySum, error) {
	b, ok := new(big.Int).SetString(dec, 10)
	if !ok || b.Sign() < 0 || b.BitLen() > 128 {
		return keySum{}, fmt.Errorf("bad key sum %q", dec)
	}
	lo := new(big.Int).And(b, new(big.Int).SetUint64(^uint64(0)))
	return keySum{hi: new(big.Int).Rsh(b, 64).Uint64(), lo: lo.Uint64()}, nil
}
