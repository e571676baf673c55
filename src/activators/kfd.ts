/**
 * kfd activator (AMD): after a BO is verified, asks the KFD driver to resume
 * each task that maps it (AMDKFD_IOC_CRIU_OP, op RESUME, for the task's host
 * pid), which is when the GPU is pointed at the restored addresses. Follows
 * include/uapi/linux/kfd_ioctl.h; tested against fake device files only,
 * never run on AMD hardware. STAGEGATE_KFD_DEVICE overrides /dev/kfd.
 */
import type { ActiveMapper } from '../core/model';
import { KfdCriuOp, kfdCriuOp } from '../native';

export async function kfdActivator(mappers: ActiveMapper[], device = process.env.STAGEGATE_KFD_DEVICE || '/dev/kfd'): Promise<void> {
  for (const pid of [...new Set(mappers.map((m) => m.hostPid))].sort((a, b) => a - b)) {
    await kfdCriuOp(device, KfdCriuOp.RESUME, pid);
  }
}
