// r9-no-save — broken on purpose: design (b) without `push r9`/`pop r9` around calls
// (kernel-model.md "Known hazards (b)": a helper clobbering r9 gives wrong BPF-stack data but
// no unwinder error). Everything else is r9-private's.
import { r9Strategy } from "./r9-private.ts";

export const r9NoSave = r9Strategy("r9-no-save", "broken on purpose: (b) without push r9/pop r9 around calls", false);
