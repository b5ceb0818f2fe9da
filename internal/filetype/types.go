// The type list of ClamAV 1.4's libclamav/filetypes.h (enum cli_file), in its order.

package filetype

// The ClamAV file types, with ClamAV's own numbers: Any is 0, TextASCII
// is CL_TYPENO (500) and the rest follow in the order of enum cli_file.
// The order matters: where ClamAV's type recognition finds several types
// it keeps the greatest.
const (
	Any            Type = 0              // CL_TYPE_ANY
	TextASCII      Type = 500 + iota - 1 // CL_TYPE_TEXT_ASCII
	TextUTF8                             // CL_TYPE_TEXT_UTF8
	TextUTF16LE                          // CL_TYPE_TEXT_UTF16LE
	TextUTF16BE                          // CL_TYPE_TEXT_UTF16BE
	BinaryData                           // CL_TYPE_BINARY_DATA
	Error                                // CL_TYPE_ERROR
	MSEXE                                // CL_TYPE_MSEXE
	ELF                                  // CL_TYPE_ELF
	MachO                                // CL_TYPE_MACHO
	MachOUniBin                          // CL_TYPE_MACHO_UNIBIN
	PosixTar                             // CL_TYPE_POSIX_TAR
	OldTar                               // CL_TYPE_OLD_TAR
	CPIOOld                              // CL_TYPE_CPIO_OLD
	CPIOODC                              // CL_TYPE_CPIO_ODC
	CPIONewc                             // CL_TYPE_CPIO_NEWC
	CPIOCRC                              // CL_TYPE_CPIO_CRC
	GZ                                   // CL_TYPE_GZ
	ZIP                                  // CL_TYPE_ZIP
	BZ                                   // CL_TYPE_BZ
	RAR                                  // CL_TYPE_RAR
	ARJ                                  // CL_TYPE_ARJ
	MSSZDD                               // CL_TYPE_MSSZDD
	MSOLE2                               // CL_TYPE_MSOLE2
	MSCAB                                // CL_TYPE_MSCAB
	MSCHM                                // CL_TYPE_MSCHM
	SIS                                  // CL_TYPE_SIS
	SCRENC                               // CL_TYPE_SCRENC
	Graphics                             // CL_TYPE_GRAPHICS
	GIF                                  // CL_TYPE_GIF
	PNG                                  // CL_TYPE_PNG
	JPEG                                 // CL_TYPE_JPEG
	TIFF                                 // CL_TYPE_TIFF
	RIFF                                 // CL_TYPE_RIFF
	BinHex                               // CL_TYPE_BINHEX
	TNEF                                 // CL_TYPE_TNEF
	CryptFF                              // CL_TYPE_CRYPTFF
	PDF                                  // CL_TYPE_PDF
	UUEncoded                            // CL_TYPE_UUENCODED
	Script                               // CL_TYPE_SCRIPT
	HTMLUTF16                            // CL_TYPE_HTML_UTF16
	RTF                                  // CL_TYPE_RTF
	SevenZip                             // CL_TYPE_7Z
	SWF                                  // CL_TYPE_SWF
	Java                                 // CL_TYPE_JAVA
	XAR                                  // CL_TYPE_XAR
	XZ                                   // CL_TYPE_XZ
	OOXMLWord                            // CL_TYPE_OOXML_WORD
	OOXMLPPT                             // CL_TYPE_OOXML_PPT
	OOXMLXL                              // CL_TYPE_OOXML_XL
	Internal                             // CL_TYPE_INTERNAL
	HWP3                                 // CL_TYPE_HWP3
	OOXMLHWP                             // CL_TYPE_OOXML_HWP
	PS                                   // CL_TYPE_PS
	EGG                                  // CL_TYPE_EGG
	OneNote                              // CL_TYPE_ONENOTE
	PythonCompiled                       // CL_TYPE_PYTHON_COMPILED
	LHALZH                               // CL_TYPE_LHA_LZH
	PartAny                              // CL_TYPE_PART_ANY
	PartHFSPlus                          // CL_TYPE_PART_HFSPLUS
	MBR                                  // CL_TYPE_MBR
	HTML                                 // CL_TYPE_HTML
	Mail                                 // CL_TYPE_MAIL
	SFX                                  // CL_TYPE_SFX
	ZIPSFX                               // CL_TYPE_ZIPSFX
	RARSFX                               // CL_TYPE_RARSFX
	SevenZipSFX                          // CL_TYPE_7ZSFX
	CABSFX                               // CL_TYPE_CABSFX
	ARJSFX                               // CL_TYPE_ARJSFX
	EGGSFX                               // CL_TYPE_EGGSFX
	NULSFT                               // CL_TYPE_NULSFT
	AutoIt                               // CL_TYPE_AUTOIT
	IShieldMSI                           // CL_TYPE_ISHIELD_MSI
	ISO9660                              // CL_TYPE_ISO9660
	DMG                                  // CL_TYPE_DMG
	GPT                                  // CL_TYPE_GPT
	APM                                  // CL_TYPE_APM
	XDP                                  // CL_TYPE_XDP
	XMLWord                              // CL_TYPE_XML_WORD
	XMLXL                                // CL_TYPE_XML_XL
	XMLHWP                               // CL_TYPE_XML_HWP
	HWPOLE2                              // CL_TYPE_HWPOLE2
	MHTML                                // CL_TYPE_MHTML
	LNK                                  // CL_TYPE_LNK
	UDF                                  // CL_TYPE_UDF
	ALZ                                  // CL_TYPE_ALZ
	Other                                // CL_TYPE_OTHER
	Ignored                              // CL_TYPE_IGNORED
)

// names holds ClamAV's name of each type, indexed by Type-TextASCII+1 (0 for Any).
var names = [...]string{
	"CL_TYPE_ANY",
	"CL_TYPE_TEXT_ASCII",
	"CL_TYPE_TEXT_UTF8",
	"CL_TYPE_TEXT_UTF16LE",
	"CL_TYPE_TEXT_UTF16BE",
	"CL_TYPE_BINARY_DATA",
	"CL_TYPE_ERROR",
	"CL_TYPE_MSEXE",
	"CL_TYPE_ELF",
	"CL_TYPE_MACHO",
	"CL_TYPE_MACHO_UNIBIN",
	"CL_TYPE_POSIX_TAR",
	"CL_TYPE_OLD_TAR",
	"CL_TYPE_CPIO_OLD",
	"CL_TYPE_CPIO_ODC",
	"CL_TYPE_CPIO_NEWC",
	"CL_TYPE_CPIO_CRC",
	"CL_TYPE_GZ",
	"CL_TYPE_ZIP",
	"CL_TYPE_BZ",
	"CL_TYPE_RAR",
	"CL_TYPE_ARJ",
	"CL_TYPE_MSSZDD",
	"CL_TYPE_MSOLE2",
	"CL_TYPE_MSCAB",
	"CL_TYPE_MSCHM",
	"CL_TYPE_SIS",
	"CL_TYPE_SCRENC",
	"CL_TYPE_GRAPHICS",
	"CL_TYPE_GIF",
	"CL_TYPE_PNG",
	"CL_TYPE_JPEG",
	"CL_TYPE_TIFF",
	"CL_TYPE_RIFF",
	"CL_TYPE_BINHEX",
	"CL_TYPE_TNEF",
	"CL_TYPE_CRYPTFF",
	"CL_TYPE_PDF",
	"CL_TYPE_UUENCODED",
	"CL_TYPE_SCRIPT",
	"CL_TYPE_HTML_UTF16",
	"CL_TYPE_RTF",
	"CL_TYPE_7Z",
	"CL_TYPE_SWF",
	"CL_TYPE_JAVA",
	"CL_TYPE_XAR",
	"CL_TYPE_XZ",
	"CL_TYPE_OOXML_WORD",
	"CL_TYPE_OOXML_PPT",
	"CL_TYPE_OOXML_XL",
	"CL_TYPE_INTERNAL",
	"CL_TYPE_HWP3",
	"CL_TYPE_OOXML_HWP",
	"CL_TYPE_PS",
	"CL_TYPE_EGG",
	"CL_TYPE_ONENOTE",
	"CL_TYPE_PYTHON_COMPILED",
	"CL_TYPE_LHA_LZH",
	"CL_TYPE_PART_ANY",
	"CL_TYPE_PART_HFSPLUS",
	"CL_TYPE_MBR",
	"CL_TYPE_HTML",
	"CL_TYPE_MAIL",
	"CL_TYPE_SFX",
	"CL_TYPE_ZIPSFX",
	"CL_TYPE_RARSFX",
	"CL_TYPE_7ZSFX",
	"CL_TYPE_CABSFX",
	"CL_TYPE_ARJSFX",
	"CL_TYPE_EGGSFX",
	"CL_TYPE_NULSFT",
	"CL_TYPE_AUTOIT",
	"CL_TYPE_ISHIELD_MSI",
	"CL_TYPE_ISO9660",
	"CL_TYPE_DMG",
	"CL_TYPE_GPT",
	"CL_TYPE_APM",
	"CL_TYPE_XDP",
	"CL_TYPE_XML_WORD",
	"CL_TYPE_XML_XL",
	"CL_TYPE_XML_HWP",
	"CL_TYPE_HWPOLE2",
	"CL_TYPE_MHTML",
	"CL_TYPE_LNK",
	"CL_TYPE_UDF",
	"CL_TYPE_ALZ",
	"CL_TYPE_OTHER",
	"CL_TYPE_IGNORED",
}
