package exefmt_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vigil-fleet/vigil/internal/exefmt"
)

// An engine parses an object of an executable type once, then resolves the
// relative offset of each signature of that type's target; a malformed
// object leaves every relative offset unresolved and is matched as raw
// bytes.
func Example() {
	// A 256-byte ELF32 whose one segment maps 0x8048000 to the file's
	// start, entry point 0x8048080, no sections.
	var obj bytes.Buffer
	ident := [16]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS32), byte(elf.ELFDATA2LSB), 1}
	binary.Write(&obj, binary.LittleEndian, elf.Header32{Ident: ident, Type: uint16(elf.ET_EXEC), Version: 1,
		Entry: 0x8048080, Phoff: 52, Ehsize: 52, Phentsize: 32, Phnum: 1, Shentsize: 40})
	binary.Write(&obj, binary.LittleEndian, elf.Prog32{Type: uint32(elf.PT_LOAD), Vaddr: 0x8048000, Memsz: 0x100, Filesz: 0x100})
	data := append(obj.Bytes(), make([]byte, 256-obj.Len())...)

	in, err := exefmt.Parse(bytes.NewReader(data), int64(len(data)), exefmt.ELF)
	if err != nil && !errors.Is(err, exefmt.ErrMalformed) {
		fmt.Println(err) // an I/O error
		return
	}
	fmt.Printf("entry point at %#x, %d sections\n", in.EP, in.NumberOfSections)
	pattern := []byte{0xde, 0xad, 0xbe, 0xef}
	for _, o := range []exefmt.Offset{
		{Kind: exefmt.EPPlus, N: 16},       // EP+16
		{Kind: exefmt.EPMinus, N: 4},       // EP-4
		{Kind: exefmt.LastSectionPlus},     // SL+0
		{Kind: exefmt.EOFMinus, N: 2},      // EOF-2
		{Kind: exefmt.EPPlus, MaxShift: 8}, // EP+0,8
	} {
		w, ok := in.Resolve(o)
		switch {
		case !ok:
			fmt.Printf("%v: no offset\n", o.Kind)
		case !w.Fits(uint32(len(pattern)), in.Size):
			fmt.Printf("%v: %#x, but the pattern would end past the object\n", o.Kind, w.Min)
		default:
			fmt.Printf("%v: a match may start in [%#x, %#x]\n", o.Kind, w.Min, w.Max)
		}
	}
	// Output:
	// entry point at 0x80, 0 sections
	// EP+: a match may start in [0x90, 0x90]
	// EP-: a match may start in [0x7c, 0x7c]
	// SL+: no offset
	// EOF-: 0xfe, but the pattern would end past the object
	// EP+: a match may start in [0x80, 0x88]
}
