// struct inactive_task_frame (x86-64), as arch/x86/include/asm/switch_to.h (7.2) lays it out:
// what __switch_to_asm leaves at task->thread.sp of a task that is not running, and what
// copy_thread() builds for a new one (a fork_frame's first part). The one definition the
// synthetic kernel's image, the machine's set-up, both unwinders and the memory check read.

/** Byte offsets of struct inactive_task_frame's fields (r15 r14 r13 r12 bx bp ret_addr). */
export const INACTIVE_TASK_FRAME = { r15: 0, r14: 8, r13: 16, r12: 24, bx: 32, bp: 40, retAddr: 48 } as const;

/** sizeof(struct inactive_task_frame). */
export const INACTIVE_TASK_FRAME_SIZE = 56;
