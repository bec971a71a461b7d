// An independent SM2 CMS implementation for the interop tests: BouncyCastle (Debian's
// libbcprov-java / libbcpkix-java). Usage:
//   verify SIGNED.der [CONTENT]          -> prints "VERIFIED <subject>" or exits 1
//   sign KEY.pk8 CERT.der CONTENT OUT.der [detached]
//   decrypt KEY.pk8 ENVELOPED.der OUT    -> SM2 key transport + SM4-CBC, BouncyCastle's engines
//   cms-decrypt KEY.pk8 ENVELOPED.der OUT     -> BouncyCastle's CMS API (CMSEnvelopedData)
//   cms-encrypt CERT.der CONTENT OUT.der      -> BouncyCastle's CMS API (CMSEnvelopedDataGenerator),
//                                                SM2 key transport as BC writes it, AES-128-CBC
//                                                content (BC 1.72's CMS has no SM4 content cipher)
import java.io.ByteArrayInputStream;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Security;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Collections;

import javax.crypto.Cipher;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

import org.bouncycastle.asn1.ASN1Integer;
import org.bouncycastle.asn1.ASN1OctetString;
import org.bouncycastle.asn1.ASN1Sequence;
import org.bouncycastle.asn1.cms.ContentInfo;
import org.bouncycastle.asn1.cms.EncryptedContentInfo;
import org.bouncycastle.asn1.cms.EnvelopedData;
import org.bouncycastle.asn1.cms.KeyTransRecipientInfo;
import org.bouncycastle.asn1.cms.RecipientInfo;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaCertStore;
import org.bouncycastle.asn1.gm.GMObjectIdentifiers;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.cms.CMSAlgorithm;
import org.bouncycastle.cms.CMSEnvelopedData;
import org.bouncycastle.cms.CMSEnvelopedDataGenerator;
import org.bouncycastle.cms.CMSProcessableByteArray;
import org.bouncycastle.cms.RecipientInformation;
import org.bouncycastle.cms.jcajce.JceCMSContentEncryptorBuilder;
import org.bouncycastle.cms.jcajce.JceKeyTransEnvelopedRecipient;
import org.bouncycastle.cms.jcajce.JceKeyTransRecipientInfoGenerator;
import org.bouncycastle.cms.CMSSignedData;
import org.bouncycastle.cms.CMSSignedDataGenerator;
import org.bouncycastle.cms.SignerInformation;
import org.bouncycastle.cms.jcajce.JcaSignerInfoGeneratorBuilder;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.crypto.engines.SM2Engine;
import org.bouncycastle.crypto.params.ECPrivateKeyParameters;
import org.bouncycastle.jcajce.provider.asymmetric.util.ECUtil;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;

public class BcCmsCheck {
    static final String SM4_CBC = "1.2.156.10197.1.104.2";
    static final String SM2_ENCRYPT = "1.2.156.10197.1.301.3";

    public static void main(String[] args) throws Exception {
        Security.addProvider(new BouncyCastleProvider());
        switch (args[0]) {
            case "verify": verify(args); break;
            case "sign": sign(args); break;
            case "decrypt": decrypt(args); break;
            case "cms-decrypt": cmsDecrypt(args); break;
            case "cms-encrypt": cmsEncrypt(args); break;
            default: throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    static byte[] read(String path) throws Exception {
        return Files.readAllBytes(Paths.get(path));
    }

    static PrivateKey key(String path) throws Exception {
        return KeyFactory.getInstance("EC", "BC").generatePrivate(new PKCS8EncodedKeySpec(read(path)));
    }

    static void verify(String[] args) throws Exception {
        CMSSignedData signed = args.length > 2
            ? new CMSSignedData(new CMSProcessableByteArray(read(args[2])), read(args[1]))
            : new CMSSignedData(read(args[1]));
        for (SignerInformation signer : signed.getSignerInfos().getSigners()) {
            @SuppressWarnings("unchecked")
            X509CertificateHolder cert = (X509CertificateHolder) signed.getCertificates()
                .getMatches(signer.getSID()).iterator().next();
            boolean ok = signer.verify(new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC").build(cert));
            if (!ok) {
                System.out.println("NOT VERIFIED");
                System.exit(1);
            }
            System.out.println("VERIFIED " + cert.getSubject() + " " + signer.getEncryptionAlgOID());
        }
    }

    static void sign(String[] args) throws Exception {
        PrivateKey privateKey = key(args[1]);
        X509Certificate cert = (X509Certificate) CertificateFactory.getInstance("X.509", "BC")
            .generateCertificate(new ByteArrayInputStream(read(args[2])));
        ContentSigner signer = new JcaContentSignerBuilder("SM3withSM2").setProvider("BC").build(privateKey);
        CMSSignedDataGenerator gen = new CMSSignedDataGenerator();
        gen.addSignerInfoGenerator(new JcaSignerInfoGeneratorBuilder(
            new JcaDigestCalculatorProviderBuilder().setProvider("BC").build()).build(signer, cert));
        gen.addCertificates(new JcaCertStore(Collections.singletonList(cert)));
        boolean detached = args.length > 5 && args[5].equals("detached");
        CMSSignedData signed = gen.generate(new CMSProcessableByteArray(read(args[3])), !detached);
        Files.write(Paths.get(args[4]), signed.getEncoded("DER"));
    }

    static byte[] fixed32(BigInteger v) {
        byte[] raw = v.toByteArray();
        byte[] out = new byte[32];
        int n = Math.min(raw.length, 32);
        System.arraycopy(raw, raw.length - n, out, 32 - n, n);
        return out;
    }

    static void decrypt(String[] args) throws Exception {
        ECPrivateKeyParameters priv = (ECPrivateKeyParameters) ECUtil.generatePrivateKeyParameter(key(args[1]));
        ContentInfo info = ContentInfo.getInstance(read(args[2]));
        EnvelopedData env = EnvelopedData.getInstance(info.getContent());
        RecipientInfo ri = RecipientInfo.getInstance(env.getRecipientInfos().getObjectAt(0));
        KeyTransRecipientInfo ktri = KeyTransRecipientInfo.getInstance(ri.getInfo());
        if (!ktri.getKeyEncryptionAlgorithm().getAlgorithm().getId().equals(SM2_ENCRYPT)) {
            throw new IllegalStateException("not SM2 key transport: " + ktri.getKeyEncryptionAlgorithm().getAlgorithm());
        }
        // GM/T 0009 SM2Cipher ::= SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, ct OCTET STRING }
        ASN1Sequence c = ASN1Sequence.getInstance(ktri.getEncryptedKey().getOctets());
        byte[] x = fixed32(ASN1Integer.getInstance(c.getObjectAt(0)).getValue());
        byte[] y = fixed32(ASN1Integer.getInstance(c.getObjectAt(1)).getValue());
        byte[] hash = ASN1OctetString.getInstance(c.getObjectAt(2)).getOctets();
        byte[] ct = ASN1OctetString.getInstance(c.getObjectAt(3)).getOctets();
        byte[] raw = new byte[1 + 64 + hash.length + ct.length];
        raw[0] = 4;
        System.arraycopy(x, 0, raw, 1, 32);
        System.arraycopy(y, 0, raw, 33, 32);
        System.arraycopy(hash, 0, raw, 65, hash.length);
        System.arraycopy(ct, 0, raw, 65 + hash.length, ct.length);
        SM2Engine engine = new SM2Engine(SM2Engine.Mode.C1C3C2);
        engine.init(false, priv);
        byte[] cek = engine.processBlock(raw, 0, raw.length);
        EncryptedContentInfo eci = env.getEncryptedContentInfo();
        if (!eci.getContentEncryptionAlgorithm().getAlgorithm().getId().equals(SM4_CBC)) {
            throw new IllegalStateException("not SM4-CBC: " + eci.getContentEncryptionAlgorithm().getAlgorithm());
        }
        byte[] iv = ASN1OctetString.getInstance(eci.getContentEncryptionAlgorithm().getParameters()).getOctets();
        Cipher sm4 = Cipher.getInstance("SM4/CBC/PKCS5Padding", "BC");
        sm4.init(Cipher.DECRYPT_MODE, new SecretKeySpec(cek, "SM4"), new IvParameterSpec(iv));
        Files.write(Paths.get(args[3]), sm4.doFinal(eci.getEncryptedContent().getOctets()));
    }

    static void cmsDecrypt(String[] args) throws Exception {
        CMSEnvelopedData env = new CMSEnvelopedData(read(args[2]));
        RecipientInformation ri = env.getRecipientInfos().getRecipients().iterator().next();
        System.out.println("KEY-TRANSPORT " + ri.getKeyEncryptionAlgOID());
        byte[] content = ri.getContent(new JceKeyTransEnvelopedRecipient(key(args[1])).setProvider("BC"));
        Files.write(Paths.get(args[3]), content);
    }

    static void cmsEncrypt(String[] args) throws Exception {
        X509Certificate cert = (X509Certificate) CertificateFactory.getInstance("X.509", "BC")
            .generateCertificate(new ByteArrayInputStream(read(args[1])));
        CMSEnvelopedDataGenerator gen = new CMSEnvelopedDataGenerator();
        gen.addRecipientInfoGenerator(new JceKeyTransRecipientInfoGenerator(
            cert, new AlgorithmIdentifier(GMObjectIdentifiers.sm2encrypt_with_sm3)).setProvider("BC"));
        CMSEnvelopedData env = gen.generate(new CMSProcessableByteArray(read(args[2])),
            new JceCMSContentEncryptorBuilder(CMSAlgorithm.AES128_CBC).setProvider("BC").build());
        Files.write(Paths.get(args[3]), env.getEncoded());
    }
}
